"""Every on-archive format is defined once, in archive/ (FORMAT.md's table of modules): the collector, the history
server and the benchmarks import its names instead of spelling its values.

The markers are taken from the archive's modules, so a route, table or file added there is guarded at once. The
scan reads code, not docs: docstrings may describe the format, and a FastAPI decorator may serve a path that is
also one of Ray's routes (the history server answers Ray's API).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from archive import api_snapshots, compacted, grafana, layout, metrics_blocks

ROOT = Path(__file__).resolve().parents[1]

# Values that only the archive may spell.
EXACT = {
    **{r: "an API snapshot route (archive/api_snapshots.py)" for r in api_snapshots.ROUTES},
    **{t.file: "a compacted table's file (archive/compacted.py)" for t in compacted.TABLES},
    compacted.TABLE_SUFFIX: "the compacted tables' suffix (archive/compacted.py: Table.file)",
}
CONTAINED = {  # found anywhere in a string, regex escapes ignored
    metrics_blocks.BLOCK_START.strip(): "the metrics block marker (archive/metrics_blocks.py)",
    grafana.SESSION_DIR: "the Grafana session folder (archive/grafana.py)",
    compacted.INFO_FILE: "the compacted info file (archive/compacted.py)",
    "/" + layout.COMPACTED_DIR: "the compacted/ folder (archive/layout.py: compacted_key, parse_compacted_key)",
}
SPOOL_FILES = {(m.FILE_PREFIX, m.FILE_EXT): m.__name__ for m in (metrics_blocks, api_snapshots)}
SOURCES = {m.SOURCE: m.__name__ for m in (metrics_blocks, api_snapshots, grafana)}
TABLE_COLUMNS = {tuple(t.schema.names): t.name for t in compacted.TABLES}
# Names that define a format when bound to a literal (a leading `_` does not hide them).
NAMES = re.compile(
    r"^_*(BLOCK_START(_BYTES)?|COMPACTION_VERSION|TABLES|TABLE_NAMES|SOURCE|INFO(_FILE)?|SESSION_DIR|"
    r"ROUTES|[A-Z_]+_ROUTES?|[A-Z_]*GRAFANA_DASHBOARDS)$"
)


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return [value.decode("latin-1") if isinstance(value, bytes) else value]
    return []


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.BinOp):  # Path("metrics") / "grafana" / ...
        return _is_literal(node.left) or _is_literal(node.right)
    if isinstance(node, ast.Call):
        return any(_is_literal(a) for a in node.args)
    return False


def violations(text: str, where: str, code_only: bool = False) -> list[str]:
    """Where `text` (one module's source) spells an archive format itself. `code_only`: only the rules for code
    that reads compacted tables (the benchmarks drive the server's own routes, which mirror Ray's)."""
    tree = ast.parse(text)
    skip: set[int] = set()  # docstrings, and the arguments of decorators
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                skip |= {id(n) for n in ast.walk(deco)}
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno}: {what}")

    f_string_parts: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            f_string_parts |= {id(p) for p in parts}
            # f"{name}.parquet", f"{prefix}{name}.parquet", f"{prefix}/{name}.parquet"; not f"tasks-{n}.parquet"
            whole_name = (
                len(parts) <= 2
                or isinstance(parts[-3], ast.FormattedValue)
                or any(s.endswith("/") for s in _strings(parts[-3]))
            )
            if (
                len(parts) >= 2
                and isinstance(parts[-2], ast.FormattedValue)
                and whole_name
                and _strings(parts[-1]) == [compacted.TABLE_SUFFIX]
            ):
                flag(node, "a compacted table's file built as f'{name}.parquet' (use Table.file)")
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        for value in _strings(node):
            bare = value.replace("\\", "")
            if (
                value in EXACT
                and not (code_only and value in api_snapshots.ROUTES)
                and not (value == compacted.TABLE_SUFFIX and id(node) in f_string_parts)
            ):
                flag(node, f"{value!r} is {EXACT[value]}")
            for marker, what in CONTAINED.items():
                if marker in bare:
                    flag(node, f"{value!r} holds {what}")
            for (prefix, ext), module in SPOOL_FILES.items():
                if bare.startswith(("^" + prefix + "-", prefix + "-")) and ext in bare:
                    flag(node, f"{value!r} names {module}'s files (use its file_name/parse_file_name)")
        if isinstance(node, ast.Call):
            literal_args = {s for a in node.args for s in _strings(a)}
            for (prefix, ext), module in SPOOL_FILES.items():
                if {prefix, ext} <= literal_args:
                    flag(node, f"file naming of {module} passed as literals (use FILE_PREFIX, FILE_EXT)")
            for kw in node.keywords:
                if kw.arg == "source" and any(s in SOURCES for s in _strings(kw.value)):
                    flag(kw.value, f"source={kw.value.value!r} (use {SOURCES[kw.value.value]}.SOURCE)")
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "schema"
                and node.args
                and isinstance(node.args[0], (ast.List, ast.Tuple))
            ):
                names = tuple(
                    s for e in node.args[0].elts if isinstance(e, ast.Tuple) and e.elts for s in _strings(e.elts[0])
                )
                if names in TABLE_COLUMNS:
                    flag(node, f"the schema of compacted table {TABLE_COLUMNS[names]!r} (archive/compacted.py)")
        if (
            not code_only
            and isinstance(node, (ast.Assign, ast.AnnAssign))
            and node.value is not None
            and _is_literal(node.value)
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for name in ast.walk(t):
                    if isinstance(name, ast.Name) and NAMES.match(name.id):
                        flag(node, f"{name.id} defined here; formats are defined in archive/")
    return found


def _scan(package: str, code_only: bool = False) -> list[str]:
    return [
        v
        for path in sorted((ROOT / package).rglob("*.py"))
        for v in violations(path.read_text(), str(path.relative_to(ROOT)), code_only)
    ]


@pytest.mark.parametrize(
    "package, code_only", [("collector", False), ("historyserver", False), ("rayhistory", False), ("benchmarks", True)]
)
def test_no_format_is_defined_outside_archive(package, code_only):
    found = _scan(package, code_only)
    assert not found, "formats defined outside archive/ (import them from there):\n" + "\n".join(found)


# --- the scan itself: each rule catches what it is for, and lets the rest be ---------------------------------------


@pytest.mark.parametrize(
    "snippet",
    [
        '_BLOCK_START = "# HELP up "',
        'BLOCK = b"# HELP up "',
        'def f(line):\n    return line.startswith("# HELP up")',
        'ROUTES = ("/api/jobs/",)',
        'def f(s):\n    return s.get("/api/cluster_status?format=1")',
        'JOBS = "/api/jobs/"',
        'def f(d):\n    return d / "metric_samples.parquet"',
        'def f(d, name):\n    return d / f"{name}.parquet"',
        'def f(prefix, t):\n    return f"{prefix}{t}.parquet"',
        'def f(d, name):\n    return d / (name + ".parquet")',
        'def f(d):\n    return d / "info.json"',
        'P = re.compile(r"^compacted/c([0-9]+)/info\\.json$")',
        'P = re.compile(r"^api-([0-9]+)\\.jsonl$")',
        'def f(d):\n    return AppendOnlySpool(d, "metrics", "prom", 1)',
        'def f(s, n):\n    return list_segments(s, n, source="api")',
        'GRAFANA_DASHBOARDS = Path("metrics") / "grafana" / "dashboards"',
        'D = "metrics/grafana/dashboards"',
        'SOURCE = "grafana"',
        "COMPACTION_VERSION = 9",
        'S = pa.schema([("node_id", _S), ("path", _S), ("size", _I), ("segments", _I), ("complete", _B)])',
    ],
)
def test_the_scan_catches(snippet):
    assert violations(snippet, "snippet"), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        '"""Blocks start at `# HELP up ` (see archive/metrics_blocks.py)."""',
        '@router.get("/api/jobs/")\ndef jobs():\n    pass',
        "from archive.metrics_blocks import BLOCK_START\nX = BLOCK_START",
        'def f(stage, part):\n    return stage / f"tasks-{part:03d}.parquet"',
        'def f(stage):\n    return sorted(stage.glob("*.parquet"))',
        'def f(s, n):\n    return list_segments(s, n, source="ray_events")',
        'SERIES = "metric_series"',
    ],
)
def test_the_scan_lets_be(snippet):
    assert not violations(snippet, "snippet"), snippet
