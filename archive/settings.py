"""The one settings mechanism of both sides: a dataclass field per setting, declared once with its type, default
and help; each is a command-line flag and a `RAYHISTORY_<NAME>` environment variable (the flag wins).

It lives in `archive/` because both the collector and the history server use it (they never import each other),
as do the storage backends (the S3 settings). Values are checked when read, and a bad one is refused with a message
that names the flag or variable, what it got and what it takes.

    @dataclass
    class S(Settings):
        port: int = field(default=8080, metadata={"help": "port to listen on"})
        mode: str = field(default="a", metadata={"help": "...", "choices": ("a", "b")})

A field's metadata may also say `env` (another variable name, or a tuple of them in order of preference, e.g.
KubeRay's RAY_CLUSTER_NAME, read when the RAYHISTORY_ one is unset), `flag: False` (environment only: tuning knobs), `duration: True` (a str holding a duration
such as 2m, checked), and `help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

PREFIX = "RAYHISTORY_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")

S = TypeVar("S", bound="Settings")


class SettingsError(ValueError):
    """A setting with a value it cannot take (the commands print it and exit 2)."""


def parse_duration(text: str) -> float:
    """Seconds from `90`, `1.5`, `2m`, `1h30m`, `500ms`."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration (give seconds, or e.g. 90s, 2m, 1h30m, 500ms)")
    h, mi, s, ms = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


@dataclasses.dataclass
class Settings:
    """Base of every settings class: adds reading from flags and the environment, and their description."""

    command: ClassVar[str] = ""  # e.g. "rayhistory serve", for messages

    def __post_init__(self) -> None:
        self.check()  # settings built in code are checked as those read from flags and variables

    # -- description -----------------------------------------------------------------------------------------

    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(cls))

    @staticmethod
    def kind(f: dataclasses.Field[Any]) -> str:
        return str(f.type).replace("typing.", "")

    @classmethod
    def flag(cls, f: dataclasses.Field[Any]) -> str | None:
        """The flag as the README shows it (`--no-x` for a setting on by default), or None (environment only)."""
        if f.metadata.get("flag", True) is False:
            return None
        name = f.name.replace("_", "-")
        if cls.kind(f) == "bool" and f.default is True:
            return f"--no-{name}"
        return f"--{name}"

    @staticmethod
    def env_name(f: dataclasses.Field[Any]) -> str:
        return PREFIX + f.name.upper()

    @staticmethod
    def aliases(f: dataclasses.Field[Any]) -> tuple[str, ...]:
        """Variables another platform sets (KubeRay's), read when the RAYHISTORY_ one is unset."""
        names = f.metadata.get("env") or ()
        return (names,) if isinstance(names, str) else tuple(names)

    @staticmethod
    def required(f: dataclasses.Field[Any]) -> bool:
        return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING

    # -- reading ---------------------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in cls.fields():
            flag = cls.flag(f)
            if flag is None:
                continue
            helptext = f"{f.metadata['help']} (${cls.env_name(f)})"
            if cls.kind(f) == "bool":
                action = "store_false" if f.default is True else "store_true"
                parser.add_argument(flag, dest=f.name, action=action, default=None, help=helptext)
            else:
                choices = f.metadata.get("choices")  # a metavar keeps the usage line one shape
                parser.add_argument(
                    flag,
                    dest=f.name,
                    default=None,
                    help=helptext,
                    choices=choices,
                    metavar=f.name.upper() if choices else None,
                )

    @classmethod
    def load(
        cls: type[S],
        given: Mapping[str, Any] | argparse.Namespace | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> S:
        """Flags (already parsed, as strings or values) over RAYHISTORY_ variables over defaults; raises
        SettingsError naming the first bad or missing value."""
        env = os.environ if environ is None else environ
        if isinstance(given, argparse.Namespace):
            given = vars(given)
        given = dict(given or {})
        values: dict[str, Any] = {}
        for f in cls.fields():
            flag = cls.flag(f) or cls.env_name(f)
            if given.get(f.name) is not None:
                values[f.name] = cls._convert(f, given[f.name], flag)
                continue
            for var in (cls.env_name(f), *cls.aliases(f)):
                if var in env and (env[var] or var == cls.env_name(f)):  # another platform's empty value: unset
                    values[f.name] = cls._convert(f, env[var], f"${var}")
                    break
            else:
                if cls.required(f):
                    raise SettingsError(
                        f"{cls.command or cls.__name__}: {flag} (or ${cls.env_name(f)}) is required: "
                        f"{f.metadata['help']}"
                    )
        return cls(**values)

    @classmethod
    def _convert(cls, f: dataclasses.Field[Any], value: Any, source: str) -> Any:
        kind = cls.kind(f)
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            if kind == "bool":
                low = text.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError(f"{value!r} is not true or false (give 1/0, true/false, yes/no, on/off)")
                return low in _TRUE
            if kind == "int":
                return int(text.replace("_", ""))
            if kind == "float":
                return float(text)
            choices = f.metadata.get("choices")
            if choices and text not in choices:
                raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
            if f.metadata.get("duration"):
                parse_duration(text)
            return text
        except ValueError as e:
            reason = (
                str(e)
                if kind in ("bool", "str")
                else f"{value!r} is not {'an integer' if kind == 'int' else 'a number'}"
            )
            raise SettingsError(f"{source}: {reason}") from None

    def check(self) -> None:
        """Cross-field checks of a subclass; raise SettingsError."""

    # -- the environment's unknowns ---------------------------------------------------------------------------

    @classmethod
    def unknown_variables(
        cls,
        environ: Mapping[str, str] | None = None,
        also: tuple[type[Settings], ...] = (),
    ) -> list[str]:
        """RAYHISTORY_ variables no setting of this class (or of `also`) declares: most likely typos."""
        env = os.environ if environ is None else environ
        names = {c.env_name(f) for c in (cls, *also) for f in c.fields()}
        return sorted(k for k in env if k.startswith(PREFIX) and k not in names)

    @classmethod
    def warn_unknown(
        cls,
        environ: Mapping[str, str] | None = None,
        also: tuple[type[Settings], ...] = (),
    ) -> None:
        unknown = cls.unknown_variables(environ, also)
        if unknown:
            print(
                f"{cls.command or cls.__name__}: warning: unknown setting(s) {', '.join(unknown)} ignored; "
                f"`{cls.command} --help` lists the settings",
                file=sys.stderr,
            )


# --- the SLS connection, declared once: the collector writes the logstores, the server searches them -----------
SLS_CREDENTIALS = (
    "ACK's RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), else "
    "ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS)"
)
_SLS_HELP = {
    "sls_endpoint": "Alibaba SLS endpoint (e.g. cn-hangzhou.log.aliyuncs.com) {use}; empty: off. Credentials: "
    + SLS_CREDENTIALS,
    "sls_project": "SLS project",
    "sls_logstore": "SLS logstore {use}",
    "sls_proxy": "HTTP proxy for SLS requests (optional)",
}


def sls_field(name: str, use: str = "") -> Any:
    """A `field()` for one of the SLS connection settings (sls_endpoint, sls_project, sls_logstore, sls_proxy): the
    same flag, variable, type and default on both sides; `use` says what this side does with it."""
    return dataclasses.field(default="", metadata={"help": " ".join(_SLS_HELP[name].format(use=use).split())})
