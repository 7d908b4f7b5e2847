"""The log-search query language: grammar, tree, errors (historyserver/search/query.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historyserver.search.query import (
    DELIMITERS,
    FIELDS,
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    And,
    MatchAll,
    Node,
    Not,
    Or,
    Phrase,
    QuerySyntaxError,
    Term,
    _combine,
    literal_terms,
    parse,
    tokenize,
    unparse,
)


def t(text: str, field: str = "message", prefix: bool = False) -> Term:
    return Term(text, field, prefix)


def test_tokenize_splits_on_sls_delimiters_and_lower_cases():
    assert tokenize('ValueError: bad "x"=1; at [a/b]{c}?d@e&f<g>h') == [
        "valueerror", "bad", "x", "1", "at", "a", "b", "c", "d", "e", "f", "g", "h",
    ]  # fmt: skip
    # `.`, `-`, `_` are not delimiters: errors.py is one token, and so is worker-1_a.
    assert tokenize("errors.py worker-1_a") == ["errors.py", "worker-1_a"]
    assert tokenize(DELIMITERS * 3) == []
    assert tokenize("Straße") == ["straße"]  # lower(), not casefold(): the backends do not turn ß into ss


@pytest.mark.parametrize(
    "query, tree",
    [
        ("", MatchAll()),
        ("   ", MatchAll()),
        ("*", MatchAll()),
        ("Error", t("error")),
        ("a b", And((t("a"), t("b")))),
        ("a and b", And((t("a"), t("b")))),
        ("a AND b Or c", Or((And((t("a"), t("b"))), t("c")))),
        ("a or b c", Or((t("a"), And((t("b"), t("c")))))),
        ("not a b", And((Not(t("a")), t("b")))),
        ("not a or b", Or((Not(t("a")), t("b")))),
        ("not (a or b)", Not(Or((t("a"), t("b"))))),
        ("(a or b) c", And((Or((t("a"), t("b"))), t("c")))),
        ("a and (b and c)", And((t("a"), t("b"), t("c")))),  # flattened
        ("a or (b or c)", Or((t("a"), t("b"), t("c")))),
        ("* and a", t("a")),
        ("* or a", MatchAll()),
        ("not not a", Not(Not(t("a")))),
        ("android order nothing", And((t("android"), t("order"), t("nothing")))),  # keywords only as whole words
        ("raylet*", t("raylet", prefix=True)),
        ("a/b", Phrase(("a", "b"))),  # an unquoted word with delimiters is the phrase of its tokens
        ("foo;", t("foo")),
        ('"Connection refused"', Phrase(("connection", "refused"))),
        ('"and"', t("and")),  # a quoted keyword is a word
        ('"foo*"', t("foo*")),  # no wildcard inside quotes: `*` is not a delimiter, so it is part of the token
        ('"say \\"hi\\" now"', Phrase(("say", "hi", "now"))),
        ('"C:\\tmp\\x"', Phrase(("c", "\\tmp\\x"))),  # only \" and \\ are escapes
        ('"a\\\\"', t("a\\")),
        ("level: ERROR", t("error", "level")),
        ("LEVEL:error", t("error", "level")),
        ("node_id: ab12*", t("ab12", "node_id", prefix=True)),
        ("job_id: *", t("", "job_id", prefix=True)),  # any value
        ('file: "logs/raylet.out"', t("logs/raylet.out", "file")),
        ("file: events/event_RAYLET.log", t("events/event_raylet.log", "file")),  # whole value, lower-case
        ('message: "x y"', Phrase(("x", "y"))),
        ("message: x", t("x")),
        ("pid: 123 task_name: f", And((t("123", "pid"), t("f", "task_name")))),
    ],
)
def test_parse(query: str, tree: Node):
    assert parse(query) == tree


@pytest.mark.parametrize(
    "query, position, expected_part",
    [
        ("a and", 5, ("a word", "a field name", '"not"')),
        ("a or or b", 5, ("a word",)),
        ("(a or b", 7, ('")"',)),
        ("a)", 1, ("the end of the query",)),
        ("level:", 6, ("a word", 'a "quoted phrase"')),
        ("12:30", 2, ()),
        ("not", 3, ("a word",)),
    ],
)
def test_syntax_errors_name_position_and_expected(query: str, position: int, expected_part: tuple[str, ...]):
    with pytest.raises(QuerySyntaxError) as e:
        parse(query)
    assert e.value.position == position
    assert set(expected_part) <= set(e.value.expected)
    assert f"at position {position}" in str(e.value)
    for name in expected_part:
        assert name in str(e.value)


def test_a_colon_in_unquoted_text_says_to_quote_it():
    with pytest.raises(QuerySyntaxError, match="quote it"):
        parse("12:30")


def test_unknown_field_names_the_known_fields():
    with pytest.raises(QuerySyntaxError) as e:
        parse("a hostname: x")
    assert e.value.position == 2
    assert "unknown field 'hostname'" in str(e.value)
    for f in FIELDS:
        assert f in str(e.value)


@pytest.mark.parametrize(
    "query, position, message",
    [
        ("*abc", 0, "only allowed at the end"),
        ("a*b", 1, "only allowed at the end"),
        ("node_id: a*b", 10, "only allowed at the end"),
        ("err?r", 3, "not a wildcard"),
        ("pid: 1?", 6, "not a wildcard"),
        ("a/b*", 0, "one token"),
        ("a/*", 0, "one token"),
        ('"unterminated', 0, "unterminated quote"),
        ('x "', 2, "unterminated quote"),
        ('""', 0, "nothing to search"),
        ('" ;/ "', 0, "nothing to search"),
        ("==", 0, "token delimiters only"),
        ('level: ""', 7, "empty value"),
    ],
)
def test_refused_words(query: str, position: int, message: str):
    with pytest.raises(QuerySyntaxError, match=message) as e:
        parse(query)
    assert e.value.position == position


def test_deep_nesting_is_refused_not_a_crash():
    # `not` chains and alternating and/or build a tree as deep as the text: refused before anything recurses.
    with pytest.raises(QuerySyntaxError, match="nests deeper"):
        parse("not " * 1000 + "a")
    alternating = "a"
    for i in range(200):
        alternating = f"(x{i} {'or' if i % 2 else 'and'} {alternating})"
    with pytest.raises(QuerySyntaxError, match="nests deeper"):
        parse(alternating)
    # Redundant parentheses add no depth; the parser itself does not recurse.
    assert parse("(" * 1500 + "a" + ")" * 1500) == t("a")
    assert parse("not " * (MAX_DEPTH - 2) + "a") is not None


def test_query_length_is_capped():
    parse("a " * (MAX_QUERY_CHARS // 2))
    with pytest.raises(QuerySyntaxError, match="characters long"):
        parse("a " * (MAX_QUERY_CHARS // 2 + 1))


def test_literal_terms_are_the_top_level_positive_message_conjuncts():
    assert literal_terms(parse('ValueError "bad input" level: error not x (y or z)')) == [
        t("valueerror"),
        Phrase(("bad", "input")),
    ]
    assert literal_terms(parse("a or b")) == []


# -- properties ---------------------------------------------------------------------------------------------------

_token_chars = st.sampled_from(list("abcXYZ019.-_\\*ßÉ"))
_tokens = st.text(_token_chars, min_size=1, max_size=5)
_leaf = st.one_of(
    st.builds(Term, _tokens),
    st.builds(lambda s: Term(s.lower().replace("*", "") or "a", prefix=True), _tokens),
    st.builds(lambda ts: Phrase(tuple(x.lower() for x in ts)), st.lists(_tokens, min_size=2, max_size=3)),
    st.builds(Term, _tokens.map(str.lower), st.sampled_from(FIELDS[1:])),
    st.builds(lambda s, f: Term(s.lower(), f, True), st.text("abc12", max_size=3), st.sampled_from(FIELDS[1:])),
)


def _normal_term(n: Term) -> Node:
    return Term(n.text.lower(), n.field, n.prefix) if n.field == "message" else n


trees = st.recursive(
    _leaf.map(lambda n: _normal_term(n) if isinstance(n, Term) else n),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda xs: _combine(And, tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda xs: _combine(Or, tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_unparse_round_trips(tree: Node):
    assert parse(unparse(tree)) == tree


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(list('ab *?():"\\/ANDORNOTlevel_') + [" and ", " or ", " not "]), max_size=30).map("".join)
)
def test_any_text_parses_or_is_a_syntax_error(text: str):
    try:
        tree = parse(text)
    except QuerySyntaxError as e:
        assert 0 <= e.position <= len(text)
    else:
        assert parse(unparse(tree)) == tree
