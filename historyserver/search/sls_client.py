"""The history server's SLS reader: aliyun-log-python-sdk's signed transport, one attempt per request, for the three
read calls log search makes (GetLogs V2, GetHistograms, GetContextLogs).

Why not the SDK's `get_logs` as is: it retries an `Incomplete` answer five times at 0.5 s and every 5xx or
connection error ten times at 1 s (reference section 5), ~12 s on a dead endpoint before the user hears anything.
Here each call is one request, sent exactly as the SDK sends it (tests/test_search_sls.py checks the bytes against
the SDK's own call), and sls_backend.py decides about retries within the search's deadline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aliyun.log import LogClient, LogException
from aliyun.log.compress import Compressor, CompressType
from aliyun.log.getcontextlogsresponse import GetContextLogsResponse
from aliyun.log.gethistogramsresponse import GetHistogramsResponse
from aliyun.log.getlogsresponse import GetLogsResponse

from archive.credentials import CredentialSource, sls_provider

MAX_LINES = 100  # rows per GetLogs call without SQL, and per side of a context call


class SlsRequestError(RuntimeError):
    """SLS refused a request (`status` and its `code`), or could not be reached (`status` 0)."""

    def __init__(self, status: int, code: str, message: str, request_id: str = "") -> None:
        super().__init__(f"SLS answered {status} {code}: {message}" if status else f"SLS unreachable: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id

    @property
    def unreachable(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Page:
    """One GetLogs answer: its rows (dicts as SLS returns them) and whether SLS had finished (`Complete`)."""

    rows: list[dict[str, Any]]
    complete: bool
    processed_rows: int = 0


class SlsReader(LogClient):
    """LogClient whose requests fail after one attempt, as SlsRequestError."""

    def _sendRequest(self, method, url, params, body, headers, respons_body_type="json"):  # noqa: N802 (SDK name)
        try:
            return super()._sendRequest(method, url, params, body, headers, respons_body_type)
        except LogException as ex:
            status = int(ex.resp_status or 0)
            if ex.get_error_code() == "LogRequestError" and status == 200:
                status = 0  # the SDK's name for "no HTTP answer at all" (it keeps the default status 200)
            raise SlsRequestError(status, ex.get_error_code(), ex.get_error_message(), ex.get_request_id()) from None

    def get_logs_once(
        self,
        project: str,
        logstore: str,
        from_time: int,
        to_time: int,
        query: str,
        line: int = MAX_LINES,
        offset: int = 0,
        reverse: bool = False,
        topic: str | None = None,
    ) -> Page:
        """GetLogs V2 (`POST /logstores/{ls}/logs`, JSON body, lz4 answer): the request LogClient.get_log builds."""
        params: dict[str, Any] = {
            "from": int(from_time),
            "to": int(to_time),
            "line": int(line),
            "offset": int(offset),
            "powerSql": False,
            "accurate": True,
            "fromNs": 0,
            "toNs": 0,
        }
        if topic:
            params["topic"] = topic
        if query:
            params["query"] = query
        params["reverse"] = reverse
        params["forward"] = True
        body = json.dumps(params).encode()
        accept = str(CompressType.default_compress_type())
        headers = {"Content-Type": "application/json", "x-log-bodyrawsize": str(len(body)), "Accept-Encoding": accept}
        resp, header = self._send(
            "POST", project, body, f"/logstores/{logstore}/logs", None, headers, respons_body_type=accept
        )
        raw = Compressor.decompress_response(header, resp)
        data = self._loadJson(200, header, raw, requestId=header.get("x-log-requestid", ""))
        answer = GetLogsResponse(data, header)  # checks the shape
        return Page([dict(row) for row in data["data"]], answer.is_completed(), answer.get_processed_rows())

    def get_histograms_once(
        self, project: str, logstore: str, from_time: int, to_time: int, query: str, topic: str = ""
    ) -> GetHistogramsResponse:
        """GetHistograms (`GET /logstores/{ls}?type=histogram`): the request LogClient.get_histograms builds."""
        params: dict[str, Any] = {}
        if topic is not None:
            params["topic"] = topic
        params["from"] = int(from_time)
        params["to"] = int(to_time)
        params["query"] = query
        params["accurate"] = True
        params["fromNs"] = 0
        params["toNs"] = 0
        params["type"] = "histogram"
        resp, header = self._send("GET", project, None, f"/logstores/{logstore}", params, {})
        return GetHistogramsResponse(resp, header)

    def get_context_once(
        self, project: str, logstore: str, pack_id: str, pack_meta: str, back_lines: int, forward_lines: int
    ) -> GetContextLogsResponse:
        """GetContextLogs (`GET /logstores/{ls}?type=context_log`): the request LogClient.get_context_logs builds."""
        params = {
            "pack_id": pack_id,
            "pack_meta": pack_meta,
            "type": "context_log",
            "back_lines": back_lines,
            "forward_lines": forward_lines,
        }
        resp, header = self._send("GET", project, None, f"/logstores/{logstore}", params, {})
        return GetContextLogsResponse(resp, header)


def make_reader(endpoint: str, source: CredentialSource, timeout: float, proxy: str | None = None) -> SlsReader:
    """A reader that asks `source` as it signs each request (RRSA's credentials are renewed ahead of expiry)."""
    reader = SlsReader(endpoint, credentials_provider=sls_provider(source))
    reader.timeout = timeout
    if proxy:
        # The SDK sends to {project}.{endpoint}; its requests.Session is the one place a proxy can be given.
        reader._session.proxies = {"http": proxy, "https": proxy}
        reader._session.trust_env = False
    return reader
