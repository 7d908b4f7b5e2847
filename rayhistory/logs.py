"""`rayhistory logs ...`: archived logs through a running history server (today: `logs search`)."""

from __future__ import annotations

import argparse

from rayhistory import logs_search


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="logs_command", required=True)
    search = sub.add_parser(
        "search", help="search log lines and task errors, printed as grep prints (node/file:line: message)"
    )
    logs_search.add_arguments(search)


def run(args: argparse.Namespace) -> int:
    return logs_search.run(args)
