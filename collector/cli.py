"""`rayhistory collect`: arguments come from CollectorSettings, so help text lives in one place.

Every error the collector means to raise is a CollectorError (collector/errors.py) or the archive's ArchiveError;
each ends the command with one line on stderr and exit code 2 (before collecting started) or 1 (after), never a
traceback and never twice (the line is printed, not also logged).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from archive.errors import ArchiveError
from archive.layout import InvalidName
from archive.settings import SettingsError
from archive.storage import open_store
from collector.errors import CollectorError, InvalidSettings
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    CollectorSettings.add_arguments(parser)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> CollectorSettings:
    """Flags over RAYHISTORY_ variables over defaults; warns about RAYHISTORY_ variables nobody declares."""
    from archive.credentials import StsSettings
    from archive.storage.s3 import S3Settings

    CollectorSettings.warn_unknown(environ, also=(S3Settings, StsSettings))
    return CollectorSettings.load(args, environ)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        _check_sls_installed(settings)
        store = open_store(settings.archive)
        if settings.once:
            store.check()  # a person archiving a stopped cluster wants to know now; a sidecar waits (Collector.run)
        # Waited for in Collector.run (polled, said in the log and on /healthz) unless told not to wait.
        session = SessionDir(settings.session_dir) if settings.session_wait == 0 else None
        collector = Collector(settings, store, session)
    except SettingsError as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 2
    except (CollectorError, ArchiveError, InvalidName) as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 2
    collector.install_signal_handlers()
    try:
        collector.run()
    except (CollectorError, ArchiveError, InvalidName) as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 1
    return 0


def _check_sls_installed(settings: CollectorSettings) -> None:
    """SLS needs the sls extra (lz4 for PutLogs, cramjam for remote write), which the small collector image leaves
    out."""
    if not settings.sls_endpoint:
        return
    try:
        import collector.sinks.sls.remote_write  # noqa: F401
        import collector.sinks.sls.transport  # noqa: F401
    except ModuleNotFoundError as e:
        raise InvalidSettings(
            f"--sls-endpoint is set but {e.name} is not installed: use the collector image built with "
            "EXTRAS=sls (the -sls tag), or pip install 'rayhistory[sls]' and the SDK (README, Streaming to SLS)"
        ) from None
