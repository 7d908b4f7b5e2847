"""A reverse proxy to a live cluster's Ray dashboard, for what Ray's web UI needs and no more.

Bounded: GET, HEAD and POST only (the UI's API calls; no websockets), request bodies up to MAX_BODY bytes, a
connect and a per-read timeout, and answers streamed in chunks (never held whole) up to MAX_ANSWER bytes. Only the
headers the UI's requests and answers need cross it: the user's cookies and credentials for this server never reach
Ray, and Ray's cookies never reach the browser. The headers by which Ray recognises a browser do cross it, so Ray
still refuses a browser's POST (its guard against cross-site requests) while an API client's POST passes. Ray's own token, when the cluster uses one, is sent as the
`X-Ray-Authorization: Bearer` header that Ray's dashboard accepts from proxies (ray/_private/authentication).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from historyserver.errors import HistoryError

METHODS = ("GET", "HEAD", "POST")
MAX_BODY = 4 * 2**20  # the UI posts small JSON; job submission is the Jobs API's, not the UI's
MAX_ANSWER = 2 * 2**30  # a whole log file downloaded through the UI may be large, but not unbounded
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0  # between two chunks; Ray's slowest UI calls (task listings of 10,000) take seconds
REQUEST_HEADERS = (
    "accept",
    "accept-encoding",
    "accept-language",
    "content-type",
    "if-modified-since",
    "if-none-match",
    "range",
    # What Ray's dashboard tells browsers by (dashboard/optional_utils.py is_browser_request): it refuses them
    # anything but GET and HEAD against CSRF and DNS rebinding, and must keep doing so behind this proxy.
    "origin",
    "referer",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "user-agent",
)
ANSWER_HEADERS = (
    "accept-ranges",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "location",
)
RAY_TOKEN_HEADER = "x-ray-authorization"


class DashboardUnreachable(HistoryError):
    """The live cluster's dashboard did not answer (the head is down, or the URL is wrong)."""

    status = 502


class BodyTooLarge(HistoryError):
    status = 413


@dataclass
class Upstream:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


async def forward(
    base_url: str,
    path: str,
    query: str,
    method: str,
    headers: dict[str, str],
    body: bytes,
    token: str | None,
    prefix: str,
) -> Upstream:
    """Send one request to the dashboard at base_url and stream its answer back. `prefix` is where the proxy is
    mounted in this server, so a redirect of Ray's to an absolute path stays inside it."""
    if len(body) > MAX_BODY:
        raise BodyTooLarge(f"the request body has {len(body)} bytes; the proxy forwards at most {MAX_BODY}")
    url = base_url.rstrip("/") + "/" + path.lstrip("/") + (f"?{query}" if query else "")
    sent = {k: v for k, v in headers.items() if k.lower() in REQUEST_HEADERS}
    if token:
        sent[RAY_TOKEN_HEADER] = f"Bearer {token}"
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
    try:
        request = client.build_request(method, url, headers=sent, content=body if method == "POST" else None)
        answer = await client.send(request, stream=True)
    except httpx.HTTPError as e:
        await client.aclose()
        raise DashboardUnreachable(
            f"the live Ray dashboard at {base_url} did not answer ({type(e).__name__}: {e}); the head pod may be "
            "restarting, or --dashboard-url-template does not reach it from this server"
        ) from e
    kept = {k.lower(): v for k, v in answer.headers.items() if k.lower() in ANSWER_HEADERS}
    location = kept.get("location")
    if location and location.startswith("/"):
        kept["location"] = prefix.rstrip("/") + location
    return Upstream(answer.status_code, kept, _stream(client, answer))


async def _stream(client: httpx.AsyncClient, answer: httpx.Response) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async for chunk in answer.aiter_raw():  # as Ray encoded it: Content-Encoding passes through
            sent += len(chunk)
            if sent > MAX_ANSWER:
                break  # the client sees a short answer (its Content-Length, when given, says so)
            yield chunk
    except httpx.HTTPError:
        return  # the dashboard went away mid-answer: end the stream, the browser retries
    finally:
        await answer.aclose()
        await client.aclose()
