"""Benchmarks: synthetic archived sessions at scale, and how long opening one takes (see open_session.py)."""
