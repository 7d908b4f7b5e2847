"""Durations on the command line: a whole number and one unit, `90m`, `12h`, `30d`, `2w`."""

from __future__ import annotations

import re

_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"^([0-9]{1,6})([mhdw])$")


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Milliseconds in `text`; raises InvalidDuration saying what is accepted."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise InvalidDuration(
            f"invalid duration {text!r}: use a whole number and one unit, m (minutes), h (hours), "
            "d (days) or w (weeks), e.g. 90m, 12h, 30d, 2w"
        )
    if int(m.group(1)) == 0:
        raise InvalidDuration(f"invalid duration {text!r}: it must be longer than zero")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def format_age(ms: int) -> str:
    """A short, readable age: `45d`, `3d 4h`, `5h 12m`, `7m`."""
    minutes = max(ms, 0) // 60_000
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days >= 10:
        return f"{days}d"
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"
