"""The `rayhistory` command: collect, serve, gc, demo, sls init and logs search."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rayhistory", description="Keep and rebuild finished Ray clusters.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    from collector import cli as collect_cli

    p = sub.add_parser("collect", help="archive one Ray session directory (runs as a sidecar)")
    collect_cli.add_arguments(p)

    p = sub.add_parser("serve", help="serve the history server over an archive")
    from historyserver import cli as serve_cli

    serve_cli.add_arguments(p)

    p = sub.add_parser("gc", help="delete archived sessions older than a given age (retention)")
    from historyserver.retention import cli as gc_cli

    gc_cli.add_arguments(p)

    p = sub.add_parser("sls", help="Alibaba SLS: `sls init` creates the logstores, MetricStore and indexes")
    from rayhistory import sls_init

    sls_init.add_arguments(p)

    p = sub.add_parser("demo", help="run a real local Ray cluster, archive it, stop it, and serve its history")
    from rayhistory import demo

    demo.add_arguments(p)

    p = sub.add_parser("logs", help="the logs of archived sessions, through a running history server")
    logs_sub = p.add_subparsers(dest="logs_command", required=True)
    p = logs_sub.add_parser(
        "search", help="search log lines and task errors, printed as grep prints (node/file:line: message)"
    )
    from rayhistory import logs_search

    logs_search.add_arguments(p)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        # Their INFO lines ("Found credentials in environment variables") would bury our one-line errors.
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "collect":
        return collect_cli.run(args)
    if args.command == "serve":
        return serve_cli.run(args)
    if args.command == "gc":
        return gc_cli.run(args)
    if args.command == "sls":
        return sls_init.run(args)
    if args.command == "logs":
        return logs_search.run(args)
    return demo.run(args)


if __name__ == "__main__":
    sys.exit(main())
