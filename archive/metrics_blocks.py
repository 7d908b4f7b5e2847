"""The `metrics` source: the collector's scrapes as OpenMetrics blocks in `metrics-<seq>.prom` files (FORMAT.md).

Writer and reader of one format, side by side (as prometheus_client keeps its parser and writer): the collector
renders blocks with `scrape_header` + `render`, the history server finds them by `BLOCK_START` or `split_scrapes`.
A round-trip test (tests/test_archive_formats.py) proves each reads what the other writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.samples import Sample

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
    out: bytes = generate_latest(_Families(list(metrics)))  # type: ignore[no-untyped-call]  # untyped upstream
    assert out.endswith(EOF.encode())
    return out[: -len(EOF)]


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
