"""`rayhistory serve`: arguments come from ServerSettings; the web stack is imported only when serving."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Mapping

from historyserver.settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ServerSettings.add_arguments(parser)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Flags over RAYHISTORY_ variables over defaults; warns about RAYHISTORY_ variables nobody declares."""
    from archive.credentials import StsSettings
    from archive.storage.s3 import S3Settings

    ServerSettings.warn_unknown(environ, also=(S3Settings, StsSettings))
    return ServerSettings.load(args, environ)


def run(args: argparse.Namespace) -> int:
    from archive.errors import ArchiveError
    from archive.storage import open_store
    from historyserver.access import config as access_config
    from historyserver.access.principal import AccessConfigError
    from historyserver.errors import SettingsError

    try:
        settings = settings_from(args)
        check_sls(settings)
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


def check_sls(settings: ServerSettings) -> None:
    """With --sls-endpoint: the SDK and the credentials are there (SettingsError naming what is missing), so that a
    wrong setup stops the start instead of failing every search."""
    if not settings.sls_endpoint:
        return
    from historyserver.errors import SettingsError

    try:
        from historyserver.search import sls_backend
    except ImportError as e:
        raise SettingsError(
            f"--sls-endpoint needs Alibaba's SLS SDK ({e}): pip install --no-deps aliyun-log-python-sdk==0.9.52"
        ) from None
    sls_backend.config_from_settings(settings)


def serve(settings: ServerSettings, store, on_ready=None) -> None:
    import uvicorn

    from historyserver.app import create_app
    from historyserver.process_memory import tune

    tune()  # before the app's threads start allocating

    app = create_app(settings, store)  # refuses (AccessConfigError) what check_exposure refuses
    server = uvicorn.Server(server_config(app, settings))
    if on_ready:
        # Once the socket listens (`started`), not at the app's startup event, which runs before uvicorn binds: a
        # URL announced then could be refused by a client that is quick to follow it.
        def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                time.sleep(0.05)
            on_ready()

        threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run()


def server_config(app, settings: ServerSettings):
    import uvicorn

    # proxy_headers off: uvicorn would otherwise replace the socket peer by X-Forwarded-For's address on requests
    # from 127.0.0.1, and --auth proxy decides whom to believe by the socket peer (a proxy in the pod is 127.0.0.1).
    # Keep-alive longer than the 60 s idle timeout of common load balancers and proxies: a server that closes an idle
    # connection first races the client's next request on it (the client sees a reset, uvicorn's 5 s made it common).
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False, timeout_keep_alive=65
    )
