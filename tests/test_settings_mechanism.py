"""The one settings mechanism (archive/settings.py): flag over RAYHISTORY_ variable over default, values checked
when read with messages naming the flag or variable, unknown variables found."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from archive.settings import Settings, SettingsError, parse_duration


@dataclass
class Example(Settings):
    command = "rayhistory example"
    archive: str = field(metadata={"help": "archive URL"})
    port: int = field(default=8080, metadata={"help": "port"})
    ratio: float = field(default=0.5, metadata={"help": "ratio"})
    compact: bool = field(default=True, metadata={"help": "compact"})
    verbose: bool = field(default=False, metadata={"help": "verbose"})
    mode: str = field(default="a", metadata={"help": "mode", "choices": ("a", "b")})
    timeout: str = field(default="2m", metadata={"help": "timeout", "duration": True})
    cluster: str = field(default="local", metadata={"help": "cluster", "env": "RAY_CLUSTER_NAME"})
    cache_mb: int = field(default=1024, metadata={"help": "cache", "flag": False})

    def check(self) -> None:
        if self.port < 1:
            raise SettingsError(f"--port must be positive, got {self.port}")


def parse(argv: list[str], env: dict[str, str] | None = None) -> Example:
    parser = argparse.ArgumentParser()
    Example.add_arguments(parser)
    return Example.load(parser.parse_args(argv), env or {})


def test_flag_over_variable_over_default():
    assert parse(["--archive", "x"]).port == 8080
    assert parse(["--archive", "x"], {"RAYHISTORY_PORT": "9000"}).port == 9000
    assert parse(["--archive", "x", "--port", "7000"], {"RAYHISTORY_PORT": "9000"}).port == 7000
    s = parse(
        [],
        {
            "RAYHISTORY_ARCHIVE": "s3://b/p",
            "RAYHISTORY_RATIO": "0.25",
            "RAYHISTORY_COMPACT": "off",
            "RAYHISTORY_VERBOSE": "yes",
            "RAYHISTORY_MODE": "b",
            "RAYHISTORY_CACHE_MB": "64",
        },
    )
    assert (s.archive, s.ratio, s.compact, s.verbose, s.mode, s.cache_mb) == ("s3://b/p", 0.25, False, True, "b", 64)
    assert parse(["--archive", "x", "--no-compact", "--verbose"]).compact is False
    # Another variable a platform already sets (KubeRay's), read when the RAYHISTORY_ one is unset.
    assert parse(["--archive", "x"], {"RAY_CLUSTER_NAME": "rc"}).cluster == "rc"
    assert parse(["--archive", "x"], {"RAY_CLUSTER_NAME": "rc", "RAYHISTORY_CLUSTER": "mine"}).cluster == "mine"


def test_environment_only_settings_have_no_flag():
    with pytest.raises(SystemExit):
        parse(["--archive", "x", "--cache-mb", "5"])
    assert Example.flag(next(f for f in Example.fields() if f.name == "cache_mb")) is None


@pytest.mark.parametrize(
    "argv, env, words",
    [
        ([], {}, "--archive (or $RAYHISTORY_ARCHIVE) is required"),
        (["--archive", "x"], {"RAYHISTORY_PORT": "eighty"}, "$RAYHISTORY_PORT: 'eighty' is not an integer"),
        (["--archive", "x"], {"RAYHISTORY_RATIO": "half"}, "$RAYHISTORY_RATIO: 'half' is not a number"),
        (["--archive", "x"], {"RAYHISTORY_COMPACT": "maybe"}, "$RAYHISTORY_COMPACT: 'maybe' is not true or false"),
        (["--archive", "x"], {"RAYHISTORY_MODE": "c"}, "$RAYHISTORY_MODE: 'c' is not one of a, b"),
        (["--archive", "x", "--timeout", "soon"], {}, "--timeout: 'soon' is not a duration"),
        (["--archive", "x", "--port", "0"], {}, "--port must be positive, got 0"),
    ],
)
def test_bad_values_are_refused_naming_the_flag_or_variable(argv, env, words):
    with pytest.raises(SettingsError) as e:
        parse(argv, env)
    assert words in str(e.value)


def test_unknown_variables_are_found():
    env = {"RAYHISTORY_PORT": "1", "RAYHISTORY_PROT": "1", "RAY_ADDRESS": "x"}
    assert Example.unknown_variables(env) == ["RAYHISTORY_PROT"]


def test_durations():
    assert [parse_duration(t) for t in ("90", "1.5", "2m", "1h30m", "500ms", "1m30s")] == [90, 1.5, 120, 5400, 0.5, 90]
    for bad in ("", "2x", "m", "-"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_rayhistory_serve_reads_its_variables_and_reports_unknown_ones(capsys):
    from historyserver import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    env = {
        "RAYHISTORY_ARCHIVE": "/tmp/a",
        "RAYHISTORY_QUERY_TIMEOUT": "30s",
        "RAYHISTORY_AUTH": "proxy",
        "RAYHISTORY_QUERY_TIMOUT": "1s",
        "RAYHISTORY_S3_MAX_ATTEMPTS": "2",
        "RAYHISTORY_KUBERNETES": "off",
    }
    s = cli.settings_from(parser.parse_args(["--port", "9999"]), env)
    assert (s.archive, s.query_timeout_s, s.auth, s.port) == ("/tmp/a", 30.0, "proxy", 9999)
    err = capsys.readouterr().err
    assert "RAYHISTORY_QUERY_TIMOUT" in err and "RAYHISTORY_S3_MAX_ATTEMPTS" not in err
    with pytest.raises(SettingsError, match=r"\$RAYHISTORY_AUTH: 'tokens' is not one of none, token, proxy"):
        cli.settings_from(parser.parse_args([]), {**env, "RAYHISTORY_AUTH": "tokens"})


def test_rayhistory_collect_is_configured_from_the_environment_alone():
    from collector import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    env = {
        "RAYHISTORY_SESSION_DIR": "/tmp/ray/session_latest",
        "RAYHISTORY_ARCHIVE": "s3://b/p",
        "RAYHISTORY_INTERVAL": "15",
        "RAYHISTORY_ONCE": "true",
        "RAY_CLUSTER_NAME": "rc",
        "POD_NAMESPACE": "ns",
        "RAYHISTORY_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com",
        "RAYHISTORY_SLS_PROJECT": "p",
        "RAYHISTORY_SLS_METRICSTORE": "m",
    }
    s = cli.settings_from(parser.parse_args([]), env)
    assert (s.session_dir, s.archive, s.interval, s.once, s.cluster, s.namespace, s.sls_endpoint) == (
        "/tmp/ray/session_latest",
        "s3://b/p",
        15.0,
        True,
        "rc",
        "ns",
        "cn-hangzhou.log.aliyuncs.com",
    )
    with pytest.raises(SettingsError, match=r"\$RAYHISTORY_INTERVAL: 'soon' is not a number"):
        cli.settings_from(parser.parse_args([]), {**env, "RAYHISTORY_INTERVAL": "soon"})
    assert s.sls_metricstore == "m" and not s.sls_logstore  # each SLS output on by its store alone
    with pytest.raises(SettingsError, match="nothing is sent to SLS"):
        cli.settings_from(parser.parse_args([]), {**env, "RAYHISTORY_SLS_METRICSTORE": ""})


@pytest.mark.parametrize("subcommand", ["collect", "serve"])
def test_every_flag_of_collect_and_serve_is_a_declared_setting_with_its_variable(subcommand):
    """No flag of these commands bypasses the one mechanism: each parser action is a settings field, so each flag
    has its RAYHISTORY_ variable (and the README row test_docs.py checks)."""
    from collector import cli as collect_cli
    from collector.settings import CollectorSettings
    from historyserver import cli as serve_cli
    from historyserver.settings import ServerSettings

    cli, settings = {"collect": (collect_cli, CollectorSettings), "serve": (serve_cli, ServerSettings)}[subcommand]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    flagged = {f.name for f in settings.fields() if settings.flag(f)}
    assert dests == flagged
    for f in settings.fields():
        value = "7" if settings.kind(f) in ("int", "float") else "true" if settings.kind(f) == "bool" else None
        if value is None or f.metadata.get("choices") or f.metadata.get("duration"):
            continue
        env = {"RAYHISTORY_ARCHIVE": "/tmp/a", settings.env_name(f): value}
        loaded = getattr(settings.load(parser.parse_args([]), env), f.name)
        assert loaded == (True if value == "true" else float(value)), f"{settings.env_name(f)} is not read"
