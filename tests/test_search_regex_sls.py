"""Regex mode (historyserver/search/regex.py) and the SLS translation (to_sls.py)."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historyserver.search.errors import SearchRefused
from historyserver.search.match import token_spans
from historyserver.search.query import parse
from historyserver.search.regex import (
    compile_regex,
    literal_index_tokens,
    required_index_tokens,
    required_literals,
    to_sls_plan,
)
from historyserver.search.to_sls import MAX_CONDITIONS, SlsKeys, to_sls

# -- regex ----------------------------------------------------------------------------------------------------


def test_invalid_regex_carries_re2s_message():
    with pytest.raises(SearchRefused, match=r"invalid regular expression \(RE2\): missing \): a\(b"):
        compile_regex("a(b")
    with pytest.raises(SearchRefused, match="invalid escape sequence"):
        compile_regex(r"\8")  # no back-references in RE2
    with pytest.raises(SearchRefused, match="empty"):
        compile_regex("")


def test_gnu_word_anchors_mean_word_boundaries_as_in_grep():
    r = compile_regex(r"\<word\>")
    assert r.re2 == r"\bword\b"
    assert r.search("a word here") and not r.search("a xwordx here") and not r.search("swords")
    assert compile_regex(r"[\<]\\<x").re2 == r"[\<]\\<x"  # inside a class, and after an escaped backslash


def test_grep_semantics_search_anywhere_case_sensitive_and_leftmost_longest():
    r = compile_regex("err(or)+")
    assert r.search("an errororor") and not r.search("an ERROR")
    assert compile_regex("(?i)error").search("an ERROR")
    assert r.highlight("an error errororor x") == [(3, 8), (9, 18)]
    assert compile_regex("a|ab").highlight("xab") == [(1, 3)]  # POSIX longest, as grep colours it
    assert compile_regex("é+").highlight("aééb") == [(1, 3)]  # characters, not UTF-8 bytes
    assert compile_regex("x*").highlight("abc") == []  # empty matches are not highlighted
    assert len(compile_regex(".").highlight("y" * 5000)) == 1  # merged, and bounded


@pytest.mark.parametrize(
    "pattern, literals",
    [
        ("Traceback", ["traceback"]),
        ("ValueError: bad (input|thing)", ["valueerror: bad "]),
        ("a|b", []),
        ("ab?c", ["a", "c"]),
        ("x+yz", ["x", "yz"]),
        ("a{2,3}bc", ["a", "bc"]),
        ("a{0,3}bc", ["bc"]),
        ("a{,3}b", ["a{,3}b"]),  # not a repetition for RE2: literal text
        (r"a\.b\dcd", ["a.b", "cd"]),
        (r"\Qa.b\E*c", ["a.", "c"]),
        ("[[:alpha:]]x]y", ["x]y"]),
        ("[]a]bc", ["bc"]),
        (r"\x41bc\p{Greek}de", ["bc", "de"]),
        ("^Start.*end$", ["start", "end"]),
        ("(?i)MiXed", ["mixed"]),
        (r"\<word\>s", ["word", "s"]),  # GNU word anchors, not the characters < and >
    ],
)
def test_required_literals(pattern: str, literals: list[str]):
    compile_regex(pattern)
    assert required_literals(pattern) == literals


def test_literal_index_tokens_use_only_what_is_certain():
    assert literal_index_tokens("connection refused to 10.0") == {("refused", False), ("to", False), ("10.0", True)}
    assert literal_index_tokens("traceback") == frozenset()  # may be the inside of a longer token
    assert literal_index_tokens("error: ") == frozenset()
    assert literal_index_tokens("x: bad ") == {("bad", False)}


_atoms = st.sampled_from(
    ["a", "b", "e", "r", "o", "ab", "err", " ", ":", "/", ".", r"\.", "[ab]", "\\d", "\\bx", r"\<", r"\>"]
)


@st.composite
def patterns(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = draw(patterns(depth + 1))
            alt = draw(patterns(depth + 1))
            part = f"({inner}|{alt})" if draw(st.booleans()) else f"({inner})"
        else:
            part = draw(_atoms)
        parts.append(part + draw(st.sampled_from(["", "", "", "?", "*", "+", "{2}", "{0,2}", "{,2}"])))
    return "".join(parts)


_lines = st.text(st.sampled_from(list("abeorABERO :/.x1{},2")), max_size=30)


@settings(max_examples=400, deadline=None)
@given(patterns(), st.lists(_lines, min_size=1, max_size=10))
def test_required_literals_and_tokens_hold_on_every_match(pattern: str, lines: list[str]):
    r = compile_regex(pattern)
    literals = required_literals(pattern)
    tokens = required_index_tokens(pattern)
    for line in lines:
        if r.search(line):
            assert all(lit in line.lower() for lit in literals), (pattern, line, literals)
            line_tokens = [t for _, _, t in token_spans(line)]
            for tok, prefix in tokens:
                assert any(t.startswith(tok) for t in line_tokens) if prefix else tok in line_tokens


@settings(max_examples=100, deadline=None)
@given(patterns(), st.lists(_lines, min_size=1, max_size=10))
def test_duckdb_regexp_matches_agrees_with_google_re2(pattern: str, lines: list[str]):
    """The archive backend filters with DuckDB's RE2, highlights with google-re2: the two must match alike."""
    r = compile_regex(pattern)
    got = duckdb.execute(
        "SELECT list(regexp_matches(l, ?) ORDER BY i) FROM (SELECT unnest(?) AS l, unnest(range(?)) AS i)",
        [r.re2, lines, len(lines)],
    ).fetchone()
    assert got is not None and got[0] == [r.search(line) for line in lines]


def test_sls_regex_plan_narrows_by_certain_tokens_and_filters_with_sql():
    plan = to_sls_plan(compile_regex("it's (bad|good) now"), 'level: "error"')
    assert plan.search == '(level: "error") and message: now* and message: "s"'
    assert plan.where == "regexp_like(\"message\", 'it''s (bad|good) now')"
    assert plan.warnings == []
    bare = to_sls_plan(compile_regex("Trace.*back"), "*")
    assert bare.search == "*" and "no literal word" in bare.warnings[0]


@pytest.mark.parametrize("pattern", ["(?P<n>x) y", "[[:digit:]]+ ms", r"\Qa.b\E", r"end\z"])
def test_sls_regex_plan_refuses_what_sls_sql_reads_differently(pattern: str):
    with pytest.raises(SearchRefused, match="SLS cannot run this regular expression"):
        to_sls_plan(compile_regex(pattern), "*")


# -- SLS search syntax ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, sls",
    [
        ("", "*"),
        ("Error", 'message: "error"'),  # a key, never the full-text index: `error` must not match level ERROR
        ("not error", '* and not message: "error"'),
        ('"a b" level: ERROR', 'message: #"a b" and level: "error"'),
        ('node_id: ab* or file: "x y"', '__tag__:node_id: ab* or __tag__:file: "x y"'),
        ("session: S1", '__tag__:session: "s1"'),
        ("pid: 12", "pid = 12"),
        ("a or (b c) not d", 'message: "a" or (message: "b" and message: "c" and not message: "d")'),
        ("not (a or b) c", 'not (message: "a" or message: "b") and message: "c"'),
        ('"foo*"', 'message: "foo*"'),  # quoted: SLS takes the star literally
        ('"and"', 'message: "and"'),
        ('"C:\\\\x"', 'message: #"c \\\\x"'),
        ("job_id: *", "job_id: *"),
        ("errors*", "message: errors*"),
    ],
)
def test_to_sls(query: str, sls: str):
    assert to_sls(parse(query), SlsKeys.default()) == sls


@pytest.mark.parametrize(
    "query, message",
    [
        ('not "a b"', "absence of a phrase"),
        ("pid: 1*", "pid is a number"),
        ("pid: abc", "pid is a number"),
        (" ".join(f"w{i}" for i in range(MAX_CONDITIONS + 1)), "at most 30 conditions"),
    ],
)
def test_to_sls_refuses_what_sls_cannot_express(query: str, message: str):
    with pytest.raises(SearchRefused, match=message):
        to_sls(parse(query))


def test_default_keys_come_from_the_logstore_schema():
    keys = SlsKeys.default()
    assert keys.fields["node_id"] == "__tag__:node_id" and keys.fields["message"] == "message"
    assert "pid" in keys.numeric and "level" not in keys.numeric
    assert to_sls(parse(" ".join(f"w{i}" for i in range(MAX_CONDITIONS))), keys).count("message:") == MAX_CONDITIONS
