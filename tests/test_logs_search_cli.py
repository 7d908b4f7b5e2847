"""`rayhistory logs search` against a real history server (uvicorn on a free port) over a real archived session."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pytest

from archive.storage import open_store
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from rayhistory import logs_search
from tests.browser import served
from tests.search_session import NODE_ID, WORKER_ERR, archived_session

VALUE_ERROR_LINE = 20  # 15 filler lines, then the marker lines and the traceback


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    logs_search.add_arguments(parser)
    return parser.parse_args(argv)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = logs_search.run(parse(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-cli")
    archive, ref = archived_session(tmp)
    token_file = tmp / "tokens.csv"
    token_file.write_text("s3cret-token,alice,1\n")
    settings = ServerSettings(
        archive=archive, cache_dir=str(tmp / "cache"), catalog_ttl=0, auth="token", auth_token_file=str(token_file)
    )
    (tmp / "token").write_text("s3cret-token\n")
    app = create_app(settings, open_store(archive))
    svc = app.state.services
    # Opened once, as a visit would: searches across sessions leave sessions not compacted yet for later
    # (test_search_pending.py tests that, and the warning this command prints then).
    svc.warehouse.db(svc.catalog.get(ref.id))
    with served(app) as url:
        yield url, ref.id, str(tmp / "token")


def test_grep_style_lines_of_one_session(server):
    url, sid, token = server
    code, out, err = run(["--server", url, "--token-file", token, "--session", sid, "ValueError"])
    assert code == 0, err
    assert out == f"{NODE_ID[:8]}/{WORKER_ERR}:{VALUE_ERROR_LINE}: ValueError: intentional failure in flaky\n"


def test_across_sessions_lines_name_the_session_and_json_has_every_field(server):
    url, sid, token = server
    code, out, _ = run(["--server", url, "--token-file", token, "--cluster", "searchc", '"connection refused"'])
    assert code == 0
    assert out.startswith(f"{sid}/{NODE_ID[:8]}/raylet.out:") and "connection refused by 10.0.0.7:6379" in out
    code, out, _ = run(["--server", url, "--token-file", token, "--json", '"connection refused"'])
    hit = json.loads(out.splitlines()[0])
    assert hit["file"] == "raylet.out" and hit["node_id"] == NODE_ID and hit["url"]
    assert hit["message"][slice(*hit["match"][0])].lower() == "connection refused"


def test_colours_highlight_the_matches_as_grep_does(server):
    url, sid, token = server
    code, out, _ = run(["--server", url, "--token-file", token, "--session", sid, "--color", "always", "intentional"])
    assert code == 0
    assert "\033[01;31mintentional\033[0m failure" in out and f"\033[32m{VALUE_ERROR_LINE}\033[0m" in out


def test_regex_mode_and_token_semantics(server):
    url, sid, token = server
    base = ["--server", url, "--token-file", token, "--session", sid]
    code, out, _ = run([*base, "--regex", r"fail(ure|ed) in \w+"])
    assert code == 0 and out.count("\n") == 1 and "intentional failure in flaky" in out
    code, out, _ = run([*base, "error"])  # a token: `error:` yes; `errors`, `ValueError` no
    assert code == 0 and "error: worker 4242 died" in out and "ValueError" not in out and "no errors" not in out


def test_follows_next_cursor_up_to_the_limit(server, monkeypatch):
    url, sid, token = server
    monkeypatch.setattr(logs_search, "MAX_PAGE", 7)  # pages of 7 hits: 20 hits take three requests
    code, out, err = run(["--server", url, "--token-file", token, "--session", sid, "step", "--limit", "20"])
    lines = out.splitlines()
    assert code == 0 and len(lines) == 20 and len(set(lines)) == 20
    assert "20 of 30 hits shown" in err


def test_nothing_found_exits_1_and_errors_exit_2_with_what_to_do(server, tmp_path):
    url, sid, token = server
    base = ["--server", url, "--token-file", token, "--session", sid]
    assert run([*base, "nosuchwordanywhere"])[:2] == (1, "")
    code, out, err = run([*base, "(ValueError or"])
    assert code == 2 and out == "" and "HTTP 400" in err and "at position 14" in err and "a word" in err
    code, _, err = run([*base, "--regex", "a(b"])
    assert code == 2 and "missing )" in err
    code, _, err = run(["--server", url, "--session", sid, "x"])
    assert code == 2 and "--token-file" in err  # 401: says how to authenticate
    code, _, err = run(["--server", "http://127.0.0.1:9", "x"])
    assert code == 2 and "cannot reach the history server" in err and "--server" in err
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "is empty" in run(["--server", url, "--token-file", str(empty), "x"])[2]


def test_the_installed_command(server):
    url, sid, token = server
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "logs", "search", "--server", url, "--token-file", token,
         "--session", sid, "flaky"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{WORKER_ERR}:{VALUE_ERROR_LINE - 1}:" in done.stdout  # the traceback's File line names flaky


def test_format_hit_of_a_task_error():
    hit = {"kind": "task_error", "session": "s", "task_name": "flaky", "task_id": "abc", "message": "ValueError: x",
           "match": [[0, 10]]}  # fmt: skip
    assert logs_search.format_hit(hit, cross=False, colour=False) == "[task_error] flaky (abc): ValueError: x\n"
    assert logs_search.format_hit(hit, cross=True, colour=False).startswith("s/[task_error]")
    assert "\033[01;31mValueError\033[0m: x" in logs_search.format_hit(hit, cross=False, colour=True)


def test_limit_must_be_positive():
    with pytest.raises(SystemExit):
        parse(["--limit", "0", "x"])
