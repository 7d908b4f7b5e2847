"""`rayhistory logs search`: the history server's log search from a terminal, printed as grep prints.

    node/file:line: message          (a log line; `session/node/...` when the search spans sessions)
    [task_error] task f (task id): message

It talks HTTP to a running server (the API of README's "Log search"), follows `next_cursor` until --limit hits
are printed, and exits as grep does: 0 hits found, 1 none, 2 an error. Standard library only: the command is also
installed where only the collector is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, TextIO

FOUND, NOTHING, FAILED = 0, 1, 2
MAX_PAGE = 1000  # the API's cap per page
TIMEOUT = 120.0  # seconds for one page: a search across many sessions may take a while, never forever

# grep's default GREP_COLORS: match bold red, file name magenta, line number green, separators cyan.
_MATCH, _FILE, _LINE, _SEP, _DIM, _RESET = "\033[01;31m", "\033[35m", "\033[32m", "\033[36m", "\033[2m", "\033[0m"


class SearchFailed(Exception):
    """What to print (one line, saying what to do) before exiting 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="QUERY", help='the query (README, "Query language"), or a regex with --regex')
    parser.add_argument(
        "--server", default="http://127.0.0.1:8080", help="the history server's URL (default http://127.0.0.1:8080)"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--session", metavar="ID", help="search one session (its id as the server lists it)")
    scope.add_argument("--cluster", metavar="C", help="search every archived session of this cluster")
    parser.add_argument("--namespace", metavar="NS", help="with --cluster or alone: only sessions of this namespace")
    parser.add_argument("--regex", action="store_true", help="QUERY is an RE2 regular expression (grep -E)")
    for name in ("node-id", "file", "job-id", "level"):
        parser.add_argument(f"--{name}", action="append", default=[], metavar="V", help=f"only lines of this {name}")
    parser.add_argument(
        "--since", metavar="T", help="only lines at or after T (epoch seconds, or ISO 8601 in UTC unless it says)"
    )
    parser.add_argument("--until", metavar="T", help="only lines before T (epoch seconds, or ISO 8601)")
    parser.add_argument("--limit", type=_positive, default=100, metavar="N", help="print at most N hits (default 100)")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON lines, one object per hit")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour matches (auto: on a terminal)"
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="a file holding the bearer token, for a server run with --auth token (not on the command line: "
        "other users could read it in the process list)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number of hits, at least 1")
    return int(text)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    colour = args.color == "always" or (args.color == "auto" and out.isatty() and "NO_COLOR" not in os.environ)
    try:
        token = _read_token(args.token_file) if args.token_file else None
        printed, total, warnings = 0, None, []
        for answer in _pages(args, token):
            total = answer.get("total")
            warnings.extend(w for w in answer.get("warnings", []) if w not in warnings)
            for hit in answer.get("hits", []):
                if printed >= args.limit:
                    break
                out.write(
                    json.dumps(hit) + "\n" if args.json else format_hit(hit, cross=not args.session, colour=colour)
                )
                printed += 1
    except SearchFailed as e:
        err.write(f"rayhistory logs search: {e}\n")
        return FAILED
    for w in warnings:
        err.write(f"warning: {w}\n")
    if not args.json and total is not None and total > printed:
        err.write(f"{printed} of {total} hits shown; raise --limit or narrow the query to see more\n")
    return FOUND if printed else NOTHING


def _read_token(path: str) -> str:
    try:
        token = open(path, encoding="utf-8").read().strip()
    except OSError as e:
        raise SearchFailed(f"cannot read --token-file {path}: {e.strerror or e}") from None
    if not token:
        raise SearchFailed(f"--token-file {path} is empty: put the bearer token in it")
    return token


def search_url(args: argparse.Namespace, limit: int, cursor: str | None) -> str:
    base = args.server.rstrip("/")
    if args.session:
        path = f"/api/v1/sessions/{urllib.parse.quote(args.session, safe='')}/logs/search"
    else:
        path = "/api/v1/logs/search"
    params: list[tuple[str, str]] = [("q", args.query), ("mode", "regex" if args.regex else "terms")]
    if args.cluster:
        params.append(("cluster", args.cluster))
    if args.namespace:
        params.append(("namespace", args.namespace))
    for name in ("node_id", "file", "job_id", "level"):
        params.extend((name, v) for v in getattr(args, name))
    for name in ("since", "until"):
        if getattr(args, name):
            params.append((name, getattr(args, name)))
    params.append(("limit", str(limit)))
    if cursor:
        params.append(("cursor", cursor))
    return f"{base}{path}?{urllib.parse.urlencode(params)}"


def _pages(args: argparse.Namespace, token: str | None) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    remaining = args.limit
    while True:
        answer = _get(search_url(args, min(remaining, MAX_PAGE), cursor), token)
        yield answer
        remaining -= len(answer.get("hits", []))
        cursor = answer.get("next_cursor")
        if not cursor or remaining <= 0:
            return


def _get(url: str, token: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        raise SearchFailed(_http_error(e)) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SearchFailed(
            f"cannot reach the history server at {url.split('/api/')[0]} ({reason}): start it (rayhistory serve) "
            "or point --server at it"
        ) from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise SearchFailed(f"the server at {url.split('/api/')[0]} did not answer JSON: is --server right?") from None
    if not isinstance(answer, dict):
        raise SearchFailed("the server's answer is not a search answer: is --server a Rayhistory server?")
    return answer


def _http_error(e: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(e.read())
        message = payload["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = e.reason
    if e.code == 401:
        return f"{message} (pass --token-file with a token of the server's --auth-token-file)"
    retry = e.headers.get("Retry-After") if e.headers else None
    return f"HTTP {e.code}: {message}" + (f" (retry in {retry} s)" if retry else "")


def format_hit(hit: dict[str, Any], cross: bool, colour: bool) -> str:
    """One grep-style line: `node/file:line: message`, the node shortened as Ray shortens ids (--json: whole)."""
    message = str(hit.get("message", "")).rstrip("\n")
    text = _highlight(message, hit.get("match") or [], colour)
    session = f"{hit.get('session')}/" if cross else ""
    if hit.get("kind", "log") == "log":
        where = f"{session}{(hit.get('node_id') or '?')[:8]}/{hit.get('file')}"
        line = str(hit.get("line"))
        if colour:
            return f"{_FILE}{where}{_RESET}{_SEP}:{_RESET}{_LINE}{line}{_RESET}{_SEP}:{_RESET} {text}\n"
        return f"{where}:{line}: {text}\n"
    who = hit.get("task_name") or hit.get("actor_name") or ""
    ident = hit.get("task_id") or hit.get("actor_id") or hit.get("job_id") or ""
    where = f"{session}[{hit.get('kind')}] {who} ({ident})".replace(" ()", "")
    if colour:
        return f"{_FILE}{where}{_RESET}{_SEP}:{_RESET} {text}\n"
    return f"{where}: {text}\n"


def _highlight(message: str, ranges: list[list[int]], colour: bool) -> str:
    if not colour or not ranges:
        return message
    parts, at = [], 0
    for start, end in sorted((int(r[0]), int(r[1])) for r in ranges):
        if start < at or end > len(message):
            continue  # overlapping or out of range: the server's ranges are merged and in bounds, skip what is not
        parts += [message[at:start], _MATCH, message[start:end], _RESET]
        at = end
    parts.append(message[at:])
    return "".join(parts)
