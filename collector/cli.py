"""`rayhistory collect`: arguments come from CollectorSettings, so help text lives in one place.

Every error the collector means to raise is a CollectorError (collector/errors.py) or the archive's ArchiveError;
each ends the command with one line on stderr and exit code 2 (before collecting started) or 1 (after), never a
traceback and never twice (the line is printed, not also logged).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping

from archive.errors import ArchiveError
from archive.layout import InvalidName
from archive.settings import SettingsError
from archive.storage import open_store
from collector.errors import CollectorError, NotARaySession
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


def _session_dir(settings: CollectorSettings) -> SessionDir:
    """The session directory, waited for up to --wait-for-session seconds (polled every half second)."""
    deadline = time.monotonic() + settings.wait_for_session
    announced = False
    while True:
        try:
            return SessionDir(settings.session_dir)
        except NotARaySession:
            if time.monotonic() >= deadline:
                raise
            if not announced:
                logging.getLogger("rayhistory.collector").info(
                    "waiting up to %.0fs for Ray's session directory %s",
                    settings.wait_for_session,
                    settings.session_dir,
                )
                announced = True
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except SettingsError as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 2
    try:
        store = open_store(settings.archive)
        store.check()
        collector = Collector(settings, store, _session_dir(settings))
    except (CollectorError, ArchiveError, InvalidName) as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 2
    collector.install_signal_handlers()
    try:
        collector.run()
    except (CollectorError, ArchiveError) as e:
        print(f"rayhistory collect: {e}", file=sys.stderr)
        return 1
    return 0
