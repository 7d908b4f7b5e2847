"""The `metrics` source: the collector's scrapes as OpenMetrics blocks in `metrics-<seq>.prom` files (FORMAT.md).

Writer and reader of one format, side by side (as prometheus_client keeps its parser and writer): the collector
renders blocks with `scrape_header` + `render`, the history server finds them by `BLOCK_START` or `split_scrapes`.
A round-trip test (tests/test_archive_formats.py) proves each reads what the other writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from archive.sequenced import SequencedNames

SOURCE = "metrics"  # the folder under nodes/{node_id}/
FILE_PREFIX, FILE_EXT = "metrics", "prom"  # files `metrics-<seq:06d>.prom`, in write order
# Every scrape block starts with its `up` family; the text right after it is the family's help.
BLOCK_START = "# HELP up "
BLOCK_START_BYTES = BLOCK_START.encode()
EOF = "# EOF\n"  # ends an OpenMetrics document; a growing file cannot end with it, so blocks are stored without
# The series a scraper records for every scrape, first in its block, in this order (a failed one writes only these).
SCRAPE_FAMILIES = ("up", "scrape_duration_seconds", "scrape_samples_scraped")
_NAMES = SequencedNames(FILE_PREFIX, FILE_EXT)
file_name = _NAMES.name
parse_file_name = _NAMES.parse


# --- writer ------------------------------------------------------------------------------------------------------


def timestamp(ms: int) -> str:
    """A sample's timestamp as the format writes it: seconds with exactly 3 decimals."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def scrape_header(target_labels: dict[str, str], ts_ms: int, up: int, duration_s: float, samples: int) -> list[Metric]:
    """The families that open a block: `up` (so that the block starts at BLOCK_START), then the scrape's own."""
    stamp = timestamp(ts_ms)
    out = []
    for name, doc, value in zip(
        SCRAPE_FAMILIES,
        (
            "1 if the scrape of the target succeeded, else 0 (recorded by the collector, as Prometheus does)",
            "how long the scrape took",
            "samples the target exposed in this scrape",
        ),
        (up, round(duration_s, 6), samples),
    ):
        m = Metric(name, doc, "gauge")
        # The timestamp as text: the writer prints it as given, so the format's exactly-3-decimals form survives.
        m.samples = [Sample(name, dict(target_labels), float(value), stamp)]  # type: ignore[arg-type]
        out.append(m)
    return out


class _Families:
    """What prometheus_client's OpenMetrics writer collects from."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def render(metrics: Iterable[Metric]) -> bytes:
    """One block: prometheus_client's OpenMetrics text of `metrics` (scrape_header first), without `# EOF`."""
    metrics = list(metrics)
    fast = _render_plain(metrics)
    if fast is not None:
        return fast
    out: bytes = generate_latest(_Families(metrics))  # type: ignore[no-untyped-call]  # untyped upstream
    assert out.endswith(EOF.encode())
    return out[: -len(EOF)]


# Names every escaping of prometheus_client's writer leaves as they are (legacy label-name characters, not `__`).
_PLAIN_NAME = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")


def _quoted(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _render_plain(metrics: list[Metric]) -> bytes | None:
    """The bytes generate_latest writes for `metrics` (its default escaping), at a fraction of its cost: the
    collector renders every scrape (issue 16's CPU target). None when a name needs escaping, or a sample has an
    exemplar or native histogram: then generate_latest itself writes the block (tests/test_archive_formats.py
    compares the two)."""
    plain = _PLAIN_NAME.fullmatch
    known: set[str] = set()
    out: list[str] = []
    for m in metrics:
        if not plain(m.name):
            return None
        out.append(f"# HELP {m.name} {_quoted(m.documentation)}\n# TYPE {m.name} {m.type}\n")
        if m.unit:
            out.append(f"# UNIT {m.name} {m.unit}\n")
        for s in m.samples:
            if s.exemplar is not None or s.native_histogram is not None:
                return None
            name = s.name
            if name not in known:
                if not plain(name):
                    return None
                known.add(name)
            if s.labels:
                parts = []
                for k, v in sorted(s.labels.items()):
                    if k not in known:
                        if not plain(k):
                            return None
                        known.add(k)
                    parts.append(f'{k}="{_quoted(v)}"')
                name = f"{name}{{{','.join(parts)}}}"
            value = floatToGoString(s.value) if s.value is not None else ""  # type: ignore[no-untyped-call]
            out.append(f"{name} {value}\n" if s.timestamp is None else f"{name} {value} {s.timestamp}\n")
    return "".join(out).encode("utf-8")


# --- reader ------------------------------------------------------------------------------------------------------


def split_scrapes(text: str) -> Iterator[str]:
    """The scrape blocks of a file's text, each a complete OpenMetrics document (with `# EOF`); an unterminated
    last line (a write that failed) is dropped."""
    block: list[str] = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        if line.startswith(BLOCK_START) and block:
            yield "".join(block) + EOF
            block = []
        block.append(line)
    if block:
        yield "".join(block) + EOF
