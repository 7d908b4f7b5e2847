"""The SLS client: the SDK's signed transport, one attempt per request, for LogGroups already serialized (wire.py).

The SDK's own retry loop (10 x 1 s, reference section 5) is cut short: every failed attempt comes back to the
sink as SlsError, which retries with exponential backoff and slows down on quota errors (403).
"""

from __future__ import annotations

from aliyun.log import LogClient, LogException
from aliyun.log.compress import Compressor, CompressType


class SlsError(RuntimeError):
    """SLS refused a request or could not be reached (one attempt; the sink retries)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"SLS answered {status} {code}: {message}")
        self.status, self.code = status, code

    @property
    def is_quota(self) -> bool:
        return self.status == 403 and "Quota" in self.code


class _OneAttemptClient(LogClient):
    """The SDK's LogClient whose requests fail after one attempt: `_send` retries only LogException, so a
    failure re-raised as another type leaves its retry loop at once and our backoff governs."""

    def _sendRequest(self, method, url, params, body, headers, respons_body_type="json"):  # noqa: N802 (SDK name)
        try:
            return super()._sendRequest(method, url, params, body, headers, respons_body_type)
        except LogException as ex:
            raise SlsError(int(ex.get_resp_status() or 0), ex.get_error_code(), ex.get_error_message()) from None

    def put_log_group(self, project: str, logstore: str, body: bytes, hash_key: str) -> None:
        """PutLogs with an already serialized LogGroup: the request `put_logs` makes after serializing (same
        headers, lz4, `/shards/route?key=`), through the SDK's signing `_send`."""
        headers = {
            "x-log-bodyrawsize": str(len(body)),
            "Content-Type": "application/x-protobuf",
            "x-log-compresstype": str(CompressType.LZ4),
        }
        self._send(
            "POST",
            project,
            Compressor.compress(body, CompressType.LZ4),
            f"/logstores/{logstore}/shards/route",
            {"key": hash_key},
            headers,
        )


def make_client(
    endpoint: str,
    access_key_id: str,
    access_key_secret: str,
    source: str,
    timeout: float,
    proxy: str | None = None,
    security_token: str = "",
) -> _OneAttemptClient:
    client = _OneAttemptClient(endpoint, access_key_id, access_key_secret, security_token or None, source=source)
    client.timeout = timeout
    if proxy:
        # The SDK sends to {project}.{endpoint}; its requests.Session is the one place a proxy can be given.
        client._session.proxies = {"http": proxy, "https": proxy}
        client._session.trust_env = False  # an environment proxy would otherwise take precedence
    return client
