"""Failed tasks' errors in a log search over the archive (historyserver/search/error_hits.py): they come first, in
time order, counted and faceted in full, and paged by position, so paging with a small limit returns each once."""

from __future__ import annotations

import base64
import json
import re

import duckdb
import pytest

from archive.compacted import TASKS
from historyserver.queries.session_db import table_paths
from historyserver.search.archive_backend import ArchiveBackend
from historyserver.search.backend import SearchFilters, SearchRequest
from historyserver.search.errors import SearchRefused
from historyserver.search.query import parse
from tests.test_incremental import synthetic  # noqa: F401 (the module's fixture)


def _failed(tables, where: str = "TRUE") -> list[tuple[str, str]]:
    """The failed attempts' (task id, error), as the tasks table has them, in time order."""
    return (
        duckdb.connect()
        .execute(f"""
        SELECT task_id, error_message FROM read_parquet({table_paths(tables, TASKS)})
        WHERE state = 'FAILED' AND error_message IS NOT NULL AND {where} ORDER BY end_time_ms, task_id
    """)
        .fetchall()
    )


def _function(error: str) -> str:
    """The remote function an error names (`ray::name()`)."""
    found = re.search(r"ray::(\w+)\(", error)
    assert found, error
    return found.group(1)


def _pages(tables, ref, text: str, limit: int):
    backend = ArchiveBackend(lambda _: tables)
    first = backend.search([ref], SearchRequest(query=parse(text), text=text, limit=limit))
    answers, cursor = [first], first.next_cursor
    while cursor is not None:
        answer = backend.search([ref], SearchRequest(query=parse(text), text=text, limit=limit, cursor=cursor))
        assert answer.total == first.total
        answers.append(answer)
        cursor = answer.next_cursor
    return answers


def test_task_errors_come_first_in_time_order_each_once_across_pages(synthetic):  # noqa: F811
    _, ref, _, tables, info = synthetic
    failed = _failed(tables)
    assert len(failed) > 50 and len(failed) <= info["failed_tasks"]
    word = _function(failed[0][1])  # some errors name it, and some log lines
    matching = _failed(tables, f"regexp_matches(error_message, '\\b{word}\\b')")
    answers = _pages(tables, ref, word, limit=7)
    hits = [h for a in answers for h in a.hits]
    assert len(hits) == answers[0].total and len(answers) > len(matching) // 7
    errors = [h for h in hits if h.kind == "task_error"]
    assert [(h.task_id, h.message) for h in errors] == matching  # each once, in order
    assert all(h.kind == "task_error" for h in hits[: len(errors)])  # before any log line
    assert all(word in h.message[a:b] for h in errors for a, b in h.match)
    facets = answers[0].facets
    assert facets["level"]["ERROR"] >= len(matching)
    assert sum(facets["job_id"].values()) >= len(matching)


def test_a_file_filter_leaves_errors_out_and_a_query_matching_none_counts_none(synthetic):  # noqa: F811
    _, ref, _, tables, _ = synthetic
    word = _function(_failed(tables)[0][1])
    backend = ArchiveBackend(lambda _: tables)
    anywhere = backend.search([ref], SearchRequest(query=parse(word), text=word, limit=5))
    in_file = backend.search(
        [ref], SearchRequest(query=parse(word), text=word, limit=5, filters=SearchFilters(file=("raylet.out",)))
    )
    assert [h.kind for h in anywhere.hits] == ["task_error"] * 5
    assert not any(h.kind == "task_error" for h in in_file.hits) and in_file.total < anywhere.total
    none = backend.search([ref], SearchRequest(query=parse("zzqqxx_nothing"), text="zzqqxx_nothing", limit=5))
    assert (none.total, none.hits, none.next_cursor) == (0, [], None)


def test_a_forged_cursor_is_refused_or_starts_at_the_first_error(synthetic):  # noqa: F811
    _, ref, _, tables, _ = synthetic
    word = _function(_failed(tables)[0][1])
    backend = ArchiveBackend(lambda _: tables)

    def forged(*fields) -> str:
        return base64.urlsafe_b64encode(json.dumps([1, ref.id, "error", *fields]).encode()).decode()

    first = backend.search([ref], SearchRequest(query=parse(word), text=word, limit=3))
    below = backend.search(
        [ref], SearchRequest(query=parse(word), text=word, limit=3, cursor=forged(-(10**12), -1, "", "", 0, 0))
    )
    assert [h.task_id for h in below.hits] == [h.task_id for h in first.hits]
    for bad in (forged("7", -1, "", "", 0, 0), forged(1.5, -1, "", "", 0, 0), forged(None, -1, "", "", 0, 0)):
        with pytest.raises(SearchRefused):
            backend.search([ref], SearchRequest(query=parse(word), text=word, limit=3, cursor=bad))
