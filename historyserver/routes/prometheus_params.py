"""The parameters of Prometheus's HTTP API, read as Prometheus 2.42 reads them, with its error messages.

Times are RFC 3339 or Unix seconds (a float, rounded to the millisecond); durations are float seconds or
Prometheus durations (`15s`, `1m30s`, `1d`). Parameters come from the URL or from a form-encoded POST body; the
body wins for single values and comes first for repeated ones (`match[]`), as Go's Request.Form.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from urllib.parse import parse_qsl

from historyserver.promql.errors import BadData
from historyserver.promql.model import Matcher

# Prometheus's boundary times (web/api/v1.MinTime, MaxTime) in ms, and how they are written in requests.
MIN_TIME_MS = (-(2**63) // 1000 + 1 + 62135596801) * 1000
MAX_TIME_MS = (2**63 // 1000 - 62135596801) * 1000 + 999
MIN_TIME_TEXT = "-292273086-05-16T16:47:06Z"
MAX_TIME_TEXT = "292277025-08-18T07:12:54.999999999Z"
MAX_POINTS = 11_000

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def go_quote(s: str) -> str:
    """Go's %q, near enough for messages (JSON's escapes are Go's for printable text)."""
    return json.dumps(s, ensure_ascii=False)


class Params:
    """A request's parameters: URL query and form body together."""

    def __init__(self, query_items: list[tuple[str, str]], body: bytes = b"", content_type: str = "") -> None:
        form = []
        if body and content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            form = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        self.items = form + list(query_items)

    def get(self, name: str) -> str:
        for k, v in self.items:
            if k == name:
                return v
        return ""

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.items if k == name]


def invalid(param: str, message: str) -> BadData:
    return BadData(f"invalid parameter {go_quote(param)}: {message}")


def parse_time(text: str) -> int:
    """Milliseconds since the epoch; raises ValueError with Prometheus's message."""
    if _FLOAT.match(text):
        t = float(text)
        if math.isfinite(t):
            whole = math.trunc(t)
            ms = whole * 1000 + round((t - whole) * 1000)
            if MIN_TIME_MS <= ms <= MAX_TIME_MS:
                return ms
    m = _RFC3339.match(text)
    if m:
        date, clock, frac, zone = m.groups()
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            dt = datetime.fromisoformat(f"{date}T{clock}{zone}")
        except ValueError:
            pass
        else:
            return int(dt.timestamp()) * 1000 + (int((frac[1:] + "00")[:3]) if frac else 0)
    if text == MIN_TIME_TEXT:
        return MIN_TIME_MS
    if text == MAX_TIME_TEXT:
        return MAX_TIME_MS
    raise ValueError(f"cannot parse {go_quote(text)} to a valid timestamp")


def parse_duration_ms(text: str) -> int:
    if _FLOAT.match(text):
        d = float(text)
        if not math.isfinite(d) or abs(d * 1e9) > 2**63 - 1:
            raise ValueError(f"cannot parse {go_quote(text)} to a valid duration. It overflows int64")
        return math.floor(d * 1e9) // 1_000_000 if d >= 0 else -(math.floor(-d * 1e9) // 1_000_000)
    m = _DURATION.match(text)
    if text and m:
        return sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_MS) if g)
    raise ValueError(f"cannot parse {go_quote(text)} to a valid duration")


def time_param(p: Params, name: str, default: int) -> int:
    """An optional time (Prometheus's parseTimeParam)."""
    text = p.get(name)
    if not text:
        return default
    try:
        return parse_time(text)
    except ValueError as e:
        raise invalid(name, f"Invalid time value for '{name}': {e}") from None


def required_time(p: Params, name: str) -> int:
    try:
        return parse_time(p.get(name))
    except ValueError as e:
        raise invalid(name, str(e)) from None


def range_params(p: Params) -> tuple[int, int, int]:
    """start, end and step of query_range, checked in Prometheus's order."""
    start = required_time(p, "start")
    end = required_time(p, "end")
    if end < start:
        raise invalid("end", "end timestamp must not be before start time")
    try:
        step = parse_duration_ms(p.get("step"))
    except ValueError as e:
        raise invalid("step", str(e)) from None
    if step <= 0:
        raise invalid("step", "zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end - start) // step > MAX_POINTS:
        raise BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
            "resolution (?step=XX)"
        )
    check_timeout(p)
    return start, end, step


def check_timeout(p: Params) -> float | None:
    """The request's own `timeout` in seconds (it can only shorten the server's --query-timeout), or None."""
    text = p.get("timeout")
    if text:
        try:
            return parse_duration_ms(text) / 1000
        except ValueError as e:
            raise invalid("timeout", str(e)) from None
    return None


def _matches_empty(m: Matcher) -> bool:
    if m.op in ("=", "!="):
        return (m.value == "") == (m.op == "=")
    try:
        hit = re.fullmatch(m.value, "") is not None
    except re.error:
        return False
    return hit == (m.op == "=~")


def match_sets(p: Params) -> list[list[Matcher]]:
    """The `match[]` selectors, each a list of matchers; each must have a matcher that does not match ''."""
    from historyserver.promql.selectors import parse_series_selector

    sets = []
    for text in p.getlist("match[]"):
        try:
            sets.append(parse_series_selector(text))
        except BadData as e:
            raise invalid("match[]", str(e)) from None
    for ms in sets:
        if all(_matches_empty(m) for m in ms):
            raise invalid("match[]", "match[] must contain at least one non-empty matcher")
    return sets
