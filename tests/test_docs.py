"""The README documents every setting, so a flag nobody can find is a failing test (Datasette's habit)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from collector.settings import CollectorSettings
from historyserver.settings import ServerSettings
from rayhistory.sls_init import SlsInitSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    for settings in (CollectorSettings, ServerSettings, SlsInitSettings):
        for f in dataclasses.fields(settings):
            flag = "--" + ("no-" if f.type == "bool" and f.default is True else "") + f.name.replace("_", "-")
            assert f"`{flag}`" in README, f"{settings.__name__}.{f.name} ({flag}) is not documented in README.md"
            assert f.metadata.get("help"), f"{settings.__name__}.{f.name} has no help text"


def test_every_setting_of_the_one_mechanism_is_in_the_readme():
    """Flags as flags; environment-only settings by their RAYHISTORY_ variable."""
    from archive.credentials import StsSettings
    from archive.storage.s3 import S3Settings
    from historyserver.fleet.settings import CompactSettings, SqlSettings

    for settings in (
        CollectorSettings,
        ServerSettings,
        S3Settings,
        StsSettings,
        SlsInitSettings,
        CompactSettings,
        SqlSettings,
    ):
        for f in settings.fields():
            flag = settings.flag(f)
            name = f"`{flag}`" if flag else f"`{settings.env_name(f)}`"
            assert name in README, f"{settings.__name__}.{f.name} ({name}) is not documented in README.md"
            assert f.metadata.get("help"), f"{settings.__name__}.{f.name} has no help text"
    assert "RAYHISTORY_<FLAG>" in README  # the rule that makes every flag a variable too
