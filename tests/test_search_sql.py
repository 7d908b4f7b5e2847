"""The query in DuckDB (to_sql) against the Python reference (match.matches), the term-index narrowing
(required_tokens), and highlight ranges."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historyserver.search.match import highlight, matches, token_spans
from historyserver.search.query import FIELDS, Node, parse, tokenize
from historyserver.search.to_sql import required_tokens, to_sql

COLUMNS = ("message", "level", "node_id", "file", "pid")

LINES = [
    {"message": "ValueError: errors here", "level": "ERROR", "node_id": "abc1", "file": "worker-1.err", "pid": 7},
    {"message": "error: x=1", "level": None, "node_id": "abd2", "file": "raylet.out", "pid": 8},
    {"message": "an Error. [task f]", "level": "INFO", "node_id": None, "file": "logs/raylet.out", "pid": None},
    {"message": "a (b) c", "level": "info", "node_id": "x", "file": "gcs_server.out", "pid": 9},
    {"message": "Straße/STRASSE  tab\tend", "level": "debug", "node_id": "x", "file": "a b.log", "pid": 10},
]


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute(
        "CREATE TABLE lines (id INTEGER, message VARCHAR, level VARCHAR, node_id VARCHAR, file VARCHAR, pid BIGINT)"
    )
    return c


def sql_hits(con: duckdb.DuckDBPyConnection, lines: list[dict], node: Node) -> list[int]:
    con.execute("DELETE FROM lines")
    con.executemany(
        "INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?)", [[i, *(l[c] for c in COLUMNS)] for i, l in enumerate(lines)]
    )
    where, params = to_sql(node)
    return [r[0] for r in con.execute(f"SELECT id FROM lines WHERE {where} ORDER BY id", params).fetchall()]


def py_hits(lines: list[dict], node: Node) -> list[int]:
    return [i for i, l in enumerate(lines) if matches(node, l)]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("error", [1]),  # token equality: not `ValueError`, `errors` or `Error.` (`.` is not a delimiter)
        ("errors*", [0]),
        ("error*", [0, 1, 2]),  # a prefix of a token, not of a substring: `valueerror` does not start with it
        ("ERROR", [1]),
        ("error.", [2]),  # `.` is not a delimiter
        ('"a b c"', [3]),  # consecutive tokens across delimiter runs
        ('"a c"', []),
        ("a/b", [3]),
        ("x", [1]),  # `x=1`: `=` is a delimiter
        ("level: error", [0]),
        ("not level: error", [1, 2, 3, 4]),  # a missing level is not `error`
        ("level: INFO", [2, 3]),  # whole value, any case
        ("node_id: ab*", [0, 1]),
        ("not node_id: *", [2]),
        ("file: raylet.out", [1]),  # the whole value, not a token of it
        ('file: "a b.log"', [4]),
        ("pid: 9", [3]),  # integers compare as their text
        ("straße", [4]),
        ("strasse", [4]),  # STRASSE lower-cased, not ß case-folded
        ('"tab end"', [4]),
        ("(error or c) not x", [3]),
        ("*", [0, 1, 2, 3, 4]),
        ("not *", []),
    ],
)
def test_sql_and_python_agree_on_examples(con, query: str, expected: list[int]):
    node = parse(query)
    assert py_hits(LINES, node) == expected
    assert sql_hits(con, LINES, node) == expected


def test_column_mapping_and_lowered_fields(con):
    where, params = to_sql(parse("node_id: ABD2 lvl"), {"node_id": "n.node", "message": "n.msg"}, lowered={"node_id"})
    assert "n.node = ?" in where and "lower(CAST(n.msg AS VARCHAR))" in where
    assert "abd2" in params


# -- random lines and queries: the SQL means what the reference means -----------------------------------------

_words = st.sampled_from(["error", "errors", "Error", "ab", "abc", "a", "b", "x1", "é", "ß", "SS", "*", "\\", "e.x"])
_delims = st.sampled_from([" ", ": ", "/", "=", "(", ")", '"', "'", "\t", ", ", "?", "[", "]", "@", "-", "."])


@st.composite
def lines(draw) -> dict:
    parts = draw(st.lists(st.tuples(_words, _delims), max_size=6))
    return {
        "message": "".join(w + d for w, d in parts),
        "level": draw(st.sampled_from([None, "ERROR", "info", "Warning"])),
        "node_id": draw(st.sampled_from([None, "ab12", "AB99", "cd"])),
        "file": draw(st.sampled_from([None, "raylet.out", "logs/worker-1.err", "a b"])),
        "pid": draw(st.sampled_from([None, 1, 12])),
    }


_leaves = st.one_of(
    st.sampled_from(["error", "errors*", "err*", "ab", "abc", "a*", '"a b"', '"error ab"', "x1", "é", "ss", "ß",
                     '"\\\\"', "e.x", "a/b", '"ab abc"']),
    st.sampled_from(["level: error", "level: info", "level: warn*", "node_id: ab*", "node_id: *", "file: raylet.out",
                     'file: "a b"', "pid: 1", "pid: 1*", 'file: "logs/worker-1.err"']),
)  # fmt: skip


@st.composite
def queries(draw, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(_leaves)
    op = draw(st.sampled_from([" ", " and ", " or ", " not ", " or not "]))
    left, right = draw(queries(depth + 1)), draw(queries(depth + 1))
    return f"({left}{op}{right})" if draw(st.booleans()) else f"{left}{op}{right}"


@settings(max_examples=300, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=8), queries())
def test_sql_matches_reference_on_random_lines(con, batch: list[dict], query: str):
    node = parse(query)
    assert sql_hits(con, batch, node) == py_hits(batch, node)


def _has(tokens: list[str], tok: tuple[str, bool]) -> bool:
    text, prefix = tok
    return any(t.startswith(text) for t in tokens) if prefix else text in tokens


@settings(max_examples=300, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=8), queries())
def test_required_tokens_never_exclude_a_match(batch: list[dict], query: str):
    node = parse(query)
    alternatives = required_tokens(node)
    if alternatives is None:
        return
    for line in batch:
        if matches(node, line):
            tokens = tokenize(line["message"])
            assert any(all(_has(tokens, tok) for tok in alt) for alt in alternatives), (line, alternatives)


def test_required_tokens_shapes():
    assert required_tokens(parse("a b")) == [frozenset({("a", False), ("b", False)})]
    assert required_tokens(parse("(a or b*) c")) == [
        frozenset({("a", False), ("c", False)}),
        frozenset({("b", True), ("c", False)}),
    ]
    assert required_tokens(parse('"x y" level: error not z')) == [frozenset({("x", False), ("y", False)})]
    assert required_tokens(parse("a or not b")) is None
    assert required_tokens(parse("level: error")) is None
    assert required_tokens(parse("*")) is None
    wide = " ".join(f"(a{i} or b{i})" for i in range(8))  # 256 alternatives: narrowed by the first five only
    alts = required_tokens(parse(wide))
    assert alts is not None and len(alts) <= 32


def test_highlight_ranges():
    msg = "ValueError: bad input, Error again; error."
    assert highlight(parse("error"), msg) == [(23, 28)]
    assert highlight(parse("error*"), msg) == [(23, 28), (36, 42)]  # the whole token a prefix starts
    assert highlight(parse('"bad input" or valueerror'), msg) == [(0, 10), (12, 21)]
    assert highlight(parse("not error bad"), msg) == [(12, 15)]  # negated terms are not highlighted
    assert highlight(parse("level: error"), msg) == []
    assert highlight(parse("bad bad*"), msg) == [(12, 15)]  # overlaps merged
    assert [msg[s:e] for s, e, _ in token_spans(msg)][:3] == ["ValueError", "bad", "input"]
    assert set(FIELDS) >= set(COLUMNS)
