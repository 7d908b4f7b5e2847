"""The text of SLS searches (historyserver/search/sls_query.py): the session scope within SLS's 30 conditions,
filters, values that hold delimiters; no I/O."""

from __future__ import annotations

import pytest

from archive.layout import SessionRef
from historyserver.search import sls_query as q
from historyserver.search.backend import SearchFilters
from historyserver.search.errors import SearchRefused


def refs(n: int, clusters: int = 1, namespaces: int = 1) -> list[SessionRef]:
    return [
        SessionRef(f"ns{i % namespaces}", f"c{i % clusters}", f"session_2026-11-25_19-58-12_{i:06d}_7000")
        for i in range(n)
    ]


def conditions(text: str) -> int:
    return text.count("__tag__:")


def test_the_scope_names_each_session_while_it_fits_then_widens_and_says_so():
    few = q.scope(refs(4))
    assert few.widened is None and conditions(few.text) == 12
    assert '__tag__:session: "session_2026-11-25_19-58-12_000003_7000"' in few.text

    by_cluster = q.scope(refs(40, clusters=3))
    assert conditions(by_cluster.text) == 6 and "__tag__:session" not in by_cluster.text
    assert by_cluster.widened == "40 sessions are searched as their 3 cluster(s) on SLS"

    by_namespace = q.scope(refs(100, clusters=50, namespaces=2))
    assert by_namespace.text == '(__tag__:namespace: "ns0" or __tag__:namespace: "ns1")'
    assert "2 namespace(s)" in (by_namespace.widened or "")

    with pytest.raises(SearchRefused, match="narrow with namespace=, cluster= or session="):
        q.scope(refs(100, clusters=100, namespaces=20))
    with pytest.raises(SearchRefused, match="no session"):
        q.scope([])


def test_filters_and_values():
    f = SearchFilters(node_id=("n1", "n2"), file=("old/raylet.out",), level=("ERROR",))
    assert q.filters(f) == [
        '(__tag__:node_id: "n1" or __tag__:node_id: "n2")',
        '__tag__:file: #"old/raylet.out"',  # a value SLS splits into tokens is a phrase: they stay in order
        'level: "ERROR"',
    ]
    assert q.value('say "hi" \\ and') == '#"say \\"hi\\" \\\\ and"'
    assert q.where(["a", "", "*", "b"]) == "a and b" and q.where([]) == "*"
