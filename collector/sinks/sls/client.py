"""The SLS SDK's client, one attempt per request: for `rayhistory sls init` and tests, which use the SDK's other
calls. The collector's sinks send PutLogs through transport.py, which makes the same request without the SDK.

The SDK's own retry loop (10 x 1 s, reference section 5) is cut short: every failed attempt comes back to the
sink as SlsError, which retries with exponential backoff and slows down on quota errors (403).
"""

from __future__ import annotations

from aliyun.log import LogClient, LogException
from aliyun.log.compress import Compressor, CompressType

from archive.credentials import CredentialsError, CredentialSource, sls_provider
from collector.sinks.sls.transport import SlsError


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
        try:
            self._send(
                "POST",
                project,
                Compressor.compress(body, CompressType.LZ4),
                f"/logstores/{logstore}/shards/route",
                {"key": hash_key},
                headers,
            )
        except CredentialsError as e:  # raised while signing: STS refused or is unreachable; the sink retries
            raise SlsError(0, "Credentials", str(e)) from None


def make_client(
    endpoint: str, credentials: CredentialSource, source: str, timeout: float, proxy: str | None = None
) -> _OneAttemptClient:
    """A client that asks `credentials` as it signs each request: RRSA's are renewed ahead of expiry without a
    new client, and their token goes out as x-acs-security-token (the SDK's auth.py)."""
    client = _OneAttemptClient(endpoint, source=source, credentials_provider=sls_provider(credentials))
    client.timeout = timeout
    if proxy:
        # The SDK sends to {project}.{endpoint}; its requests.Session is the one place a proxy can be given.
        client._session.proxies = {"http": proxy, "https": proxy}
        client._session.trust_env = False  # an environment proxy would otherwise take precedence
    return client
