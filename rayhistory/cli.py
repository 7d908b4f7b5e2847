"""The `rayhistory` command: collect, serve, gc, compact, sql, inject, demo, logs (search) and sls (init).

Only the chosen subcommand's module is imported (every one for `rayhistory --help`), and an image may hold only
some of them: the collector's image has no pyarrow or DuckDB (Dockerfile.collector). A subcommand whose third-party dependencies are
not installed still appears, and says which extra to install when run, instead of breaking every other command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

OURS = ("archive", "collector", "historyserver", "rayhistory")
# subcommand -> (module with add_arguments(parser) and run(args), help, the extra that brings its dependencies)
SUBCOMMANDS = {
    "collect": ("collector.cli", "archive one Ray session directory (runs as a sidecar)", "collector"),
    "serve": ("historyserver.cli", "serve the history server over an archive", "server"),
    "gc": ("historyserver.retention.cli", "delete archived sessions older than a given age (retention)", "server"),
    "compact": (
        "historyserver.fleet.compact",
        "compact many archived sessions into the archive, here or as Ray tasks (--ray-address)",
        "server",
    ),
    "sql": ("historyserver.fleet.sql", "SQL over the compacted tables of many sessions (DuckDB, or Ray)", "server"),
    "inject": ("rayhistory.inject", "add the collector sidecar to RayCluster/RayJob/RayService YAML", "inject"),
    "demo": ("rayhistory.demo", "run a real local Ray cluster, archive it, stop it, and serve its history", "demo"),
    "sls": ("rayhistory.sls_init", "Alibaba SLS: `sls init` creates the logstores, MetricStore and indexes", "sls"),
    # A client of a running server, standard library only: any install has it.
    "logs": ("rayhistory.logs", "search archived logs through a running history server (logs search)", "collector"),
}


def _load(module: str) -> ModuleType | str:
    """The subcommand's module, or the name of the missing third-party module that keeps it from loading."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if not missing or missing in OURS:
            raise  # our own code is broken: not a missing extra
        return missing


def _chosen(argv: list[str]) -> str | None:
    """The subcommand the arguments name (the first word after the global options), if any: only its module is
    loaded. None (e.g. `rayhistory --help`): every module is, to say which are installed here."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
        if arg in ("-h", "--help"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    if "serve" in (sys.argv[1:] if argv is None else argv)[:2]:  # `serve` or `-v serve`: before pyarrow loads
        from historyserver.process_memory import before_imports

        before_imports()
    parser = argparse.ArgumentParser(prog="rayhistory", description="Keep and rebuild finished Ray clusters.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)
    modules: dict[str, ModuleType | str] = {}
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, (module, helptext, extra) in SUBCOMMANDS.items():
        if chosen is not None and name != chosen:
            # Not run, so not imported: `collect` in a full install would otherwise load the server's DuckDB and
            # pyarrow (about 50 MiB of a sidecar's memory) only to describe `compact` and `gc`.
            sub.add_parser(name, help=helptext).add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        loaded = modules[name] = _load(module)
        if isinstance(loaded, str):
            p = sub.add_parser(name, help=f"{helptext} [not installed here: needs rayhistory[{extra}]]")
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        else:
            loaded.add_arguments(sub.add_parser(name, help=helptext))

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        # Their INFO lines ("Found credentials in environment variables") would bury our one-line errors.
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    loaded = modules[args.command]
    if not isinstance(loaded, str):
        try:
            return int(loaded.run(args))
        except ModuleNotFoundError as e:  # serve imports its web stack only when it starts
            loaded = (e.name or "").split(".")[0]
            if not loaded or loaded in OURS:
                raise
    print(
        f"rayhistory {args.command}: not installed here ({loaded} is missing); "
        f"pip install 'rayhistory[{SUBCOMMANDS[args.command][2]}]' (or use the image that has it)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
