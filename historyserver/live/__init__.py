"""What runs now: the live Ray clusters the history server can see next to the archived sessions."""
