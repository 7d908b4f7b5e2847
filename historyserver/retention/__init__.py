"""Retention: `rayhistory gc` deletes whole sessions past their age, in an order a crash cannot tear.

durations.py parses `30d`; policy.py decides what goes; failures.py says what is cheaply known of a session's
failures; sweep.py deletes (and finishes interrupted deletions); progress.py shows it; cli.py wires them.
"""
