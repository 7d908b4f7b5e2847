"""`rayhistory serve`: arguments come from ServerSettings; the web stack is imported only when serving."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from historyserver.settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(ServerSettings):
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if str(f.type) == "bool":  # on by default: the flag turns it off
            parser.add_argument(flag.replace("--", "--no-"), dest=f.name, action="store_false", default=None,
                                help=f.metadata["help"] + " (this flag turns it off)")
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, required=required, default=None, help=f.metadata["help"])


def settings_from(args: argparse.Namespace) -> ServerSettings:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServerSettings)
             if getattr(args, f.name, None) is not None}
    return ServerSettings(**given)


def run(args: argparse.Namespace) -> int:
    from archive.errors import ArchiveError
    from archive.storage import open_store

    from historyserver.errors import SettingsError

    try:
        settings = settings_from(args)
    except SettingsError as e:
        print(f"rayhistory serve: {e}", file=sys.stderr)
        return 2
    try:
        store = open_store(settings.archive)
        store.check()
    except ArchiveError as e:
        print(f"rayhistory serve: {e}", file=sys.stderr)
        return 2
    serve(settings, store)
    return 0


def serve(settings: ServerSettings, store, on_ready=None) -> None:
    import uvicorn

    from historyserver.app import create_app

    app = create_app(settings, store)
    if on_ready:
        app.router.on_startup.append(on_ready)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
