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
        if str(f.type) == "bool" and f.default is True:  # on by default: the flag turns it off
            parser.add_argument(flag.replace("--", "--no-"), dest=f.name, action="store_false", default=None,
                                help=f.metadata["help"] + " (this flag turns it off)")
            continue
        if str(f.type) == "bool":  # off by default: the flag turns it on
            parser.add_argument(flag, dest=f.name, action="store_true", default=None, help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        choices = f.metadata.get("choices")  # named in the help; a metavar keeps the usage line one shape
        parser.add_argument(flag, type=kind, required=required, default=None, help=f.metadata["help"],
                            choices=choices, metavar=f.name.upper() if choices else None)


def settings_from(args: argparse.Namespace) -> ServerSettings:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServerSettings)
             if getattr(args, f.name, None) is not None}
    return ServerSettings(**given)


def run(args: argparse.Namespace) -> int:
    from archive.errors import ArchiveError
    from archive.storage import open_store
    from historyserver.access import config as access_config
    from historyserver.access.principal import AccessConfigError

    from historyserver.errors import SettingsError

    try:
        settings = settings_from(args)
    except SettingsError as e:
        print(f"rayhistory serve: {e}", file=sys.stderr)
        return 2
    try:
        access_config.load(settings)  # before the archive: a wrong flag is found without waiting on a bucket
        store = open_store(settings.archive)
        store.check()
    except (ArchiveError, AccessConfigError) as e:
        print(f"rayhistory serve: {e}", file=sys.stderr)
        return 2
    serve(settings, store)
    return 0


def serve(settings: ServerSettings, store, on_ready=None) -> None:
    import uvicorn

    from historyserver.app import create_app

    app = create_app(settings, store)  # refuses (AccessConfigError) what check_exposure refuses
    if on_ready:
        app.router.on_startup.append(on_ready)
    uvicorn.Server(server_config(app, settings)).run()


def server_config(app, settings: ServerSettings):
    import uvicorn

    # proxy_headers off: uvicorn would otherwise replace the socket peer by X-Forwarded-For's address on requests
    # from 127.0.0.1, and --auth proxy decides whom to believe by the socket peer (a proxy in the pod is 127.0.0.1).
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False)
