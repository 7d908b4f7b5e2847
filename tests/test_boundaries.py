"""The architecture rules that a reader of the tree relies on."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_collector_and_historyserver_never_import_each_other():
    assert "historyserver" not in _imports("collector")
    assert "collector" not in _imports("historyserver")


def test_archive_depends_on_neither():
    assert not _imports("archive") & {"collector", "historyserver", "rayhistory"}


def test_collector_runtime_stays_small():
    """The sidecar needs only the standard library, boto3 for s3:// archives, prometheus-client for its metrics,
    and, when it streams to SLS, lz4 (PutLogs' bodies), cramjam (snappy, for Prometheus remote write into a
    MetricStore) and Alibaba's SLS SDK (`sls init`). pyarrow and numpy: archive's compacted-table modules, which
    the server uses (the collector's path imports neither: tests/test_images.py has them absent)."""
    import sys

    allowed = set(sys.stdlib_module_names) | {
        "archive",
        "collector",
        "boto3",
        "botocore",
        "prometheus_client",
        "aliyun",
        "pyarrow",
        "numpy",
        "cramjam",
        "lz4",
    }
    assert _imports("collector") | _imports("archive") <= allowed
