"""Links into the search pages from the rest of ours: the query that finds an error text, the URL of a search."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .query import Phrase, Term, tokenize, unparse

MAX_TOKENS = 12  # a longer error text is cut: its first words find it, and the query stays readable


def text_query(text: str) -> str:
    """The query finding lines that contain this text's first words in order (a phrase; one word, a term)."""
    tokens = tokenize(text)[:MAX_TOKENS]
    if not tokens:
        return ""
    return unparse(Term(tokens[0]) if len(tokens) == 1 else Phrase(tuple(tokens)))


def search_url(session_id: str | None, **params: str | float | None) -> str:
    """Our search page (one session's, or across sessions) with this state in its URL."""
    path = f"/sessions/{quote(session_id, safe='')}/search" if session_id else "/search"
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")
