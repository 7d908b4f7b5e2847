"""A fast reader of the common case of the Prometheus text format (0.0.4), giving the families prometheus_client's
`text_string_to_metric_families` gives: the collector parses every scrape, and that parser's per-character label
scan was its largest cost (about 60 ms a 1,500-series scrape; issue 16's CPU target).

Only plain text takes this path: names of the legacy character set, label values without backslashes, one space
before the value and before an optional timestamp, HELP text without backslashes, no quotes or tabs in comment
lines, no `__`-prefixed label names, no exemplars. Anything else answers None and the caller hands the whole
scrape to prometheus_client, so an odd target is read exactly as before (tests/test_metrics_exposition.py
compares the two readers over Ray's reference exposition and edge cases).
"""

from __future__ import annotations

import re

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{([^{{}}\\\t]*)\}})? (\S+)(?: (\S+))?")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"(,|$)')
_FAMILY_NAME = re.compile(_NAME)
# The sample names a family of each type takes (prometheus_client's grouping); other types take the name only.
_SUFFIXES = {"summary": ("_count", "_sum", ""), "histogram": ("_count", "_sum", "_bucket")}


def _labels(text: str) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    pos = n = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None or m.group(1).startswith("__"):
            return None
        labels[m.group(1)] = m.group(2)
        n += 1
        pos = m.end()
    return labels if len(labels) == n else None  # a repeated name: prometheus_client decides


def _number(text: str) -> int | float | None:
    if "_" in text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _metric(name: str, doc: str, typ: str, samples: list[Sample]) -> Metric:
    if typ == "counter":  # the OpenMetrics shape prometheus_client gives counters
        if name.endswith("_total"):
            name = name[:-6]
        else:
            samples = [Sample(s.name + "_total", *s[1:]) for s in samples]
    metric = Metric(name, doc, typ)
    metric.samples = samples
    return metric


def parse(text: str) -> list[Metric] | None:
    """The families of `text`, or None when it is not plain (see the module's docstring)."""
    out: list[Metric] = []
    name, doc, typ = "", "", "untyped"
    samples: list[Sample] = []
    allowed: tuple[str, ...] = ()
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line[0] == "#":
            if '"' in line or "\t" in line:
                return None
            parts = line.split(None, 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                    return None
                continue  # a comment
            candidate = parts[2]
            if not _FAMILY_NAME.fullmatch(candidate):
                return None
            if parts[1] == "HELP":
                if "\\" in line:
                    return None
                if candidate != name:
                    if name:
                        out.append(_metric(name, doc, typ, samples))
                    name, typ, samples, allowed = candidate, "untyped", [], (candidate,)
                doc = parts[3] if len(parts) == 4 else ""
            else:
                if len(parts) < 4:
                    return None
                if candidate != name:
                    if name:
                        out.append(_metric(name, doc, typ, samples))
                    name, doc, samples = candidate, "", []
                typ = parts[3]
                allowed = tuple(name + s for s in _SUFFIXES.get(typ, ("",)))
            continue
        m = _SAMPLE.fullmatch(line)
        if m is None:
            return None
        sample_name, label_text, value_text, ts_text = m.groups()
        labels = _labels(label_text) if label_text else None if label_text == "" else {}
        value = _number(value_text)
        ts = _number(ts_text) if ts_text is not None else None
        if labels is None or value is None or (ts_text is not None and ts is None) or " # " in line:
            return None
        sample = Sample(sample_name, labels, value, ts / 1000 if ts is not None else None)
        if sample_name in allowed:
            samples.append(sample)
            continue
        if name:
            out.append(_metric(name, doc, typ, samples))
        name, doc, typ, samples, allowed = "", "", "untyped", [], ()
        out.append(_metric(sample_name, "", "untyped", [sample]))
    if name:
        out.append(_metric(name, doc, typ, samples))
    return out
