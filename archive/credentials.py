"""Alibaba Cloud credentials for OSS and SLS, on both sides: static AccessKeys, or ACK's RRSA (an OIDC token file
traded with STS for temporary credentials, refreshed well before they expire).

Which one comes from the environment, under the names Alibaba's SDKs and ACK's pod identity webhook use:

    ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE   RRSA (all three)
    ALIBABA_CLOUD_ROLE_SESSION_NAME, ALIBABA_CLOUD_STS_REGION, ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED   optional
    ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET [, ALIBABA_CLOUD_SECURITY_TOKEN]   static

The exchange is STS's AssumeRoleWithOIDC, an unsigned RPC call (the OIDC token is the proof), made here with the
standard library: the request `alibabacloud-credentials` makes (provider/oidc.py: the same parameters and
variables), without its dependencies (aiohttp, APScheduler) in the collector's image, and with a refresh policy
that keeps serving valid credentials while STS is briefly down. Users of a source call `get()` before each request;
it answers from memory until a third of the credentials' life is left (at most 15 minutes), then asks STS once.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from archive.errors import ArchiveError
from archive.settings import Settings, SettingsError, parse_duration

log = logging.getLogger("rayhistory.credentials")

RRSA_VARIABLES = ("ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE")
STATIC_VARIABLES = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
MAX_MARGIN_S = 15 * 60  # refresh at the latest this long before expiry (what Alibaba's and AWS's SDKs do)
RETRY_S = 10.0  # after a failed refresh, while the old credentials still hold, ask STS again this much later


class CredentialsError(ArchiveError):
    """No usable credentials: the environment is incomplete, or STS refused or cannot be reached (the message
    names the variable or STS's error code and what to do)."""

    def __init__(self, message: str, refused: bool = True) -> None:
        super().__init__(message)
        self.refused = refused  # False: STS could not be reached (try again later)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""  # STS credentials only
    expiration: float | None = None  # epoch seconds; None: never expires


class CredentialSource(Protocol):
    kind: str  # "static" or "rrsa", for messages and metrics

    def get(self) -> Credentials:
        """Credentials valid now; raises CredentialsError."""
        ...

    def refresh_at(self) -> float | None:
        """When `get()` will next ask for new credentials (epoch seconds), or None if never."""
        ...


@dataclass
class StaticCredentials:
    credentials: Credentials
    kind: str = "static"

    def get(self) -> Credentials:
        return self.credentials

    def refresh_at(self) -> float | None:
        return None


@dataclass
class StsSettings(Settings):
    """How to reach STS for RRSA (environment only; the role and token come from ACK's variables)."""

    command = "rayhistory"
    sts_endpoint: str = field(
        default="",
        metadata={
            "help": "STS endpoint for RRSA, a host or URL; empty: sts.aliyuncs.com, or sts[-vpc].REGION.aliyuncs.com "
            "from $ALIBABA_CLOUD_STS_REGION and $ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
            "flag": False,
        },
    )
    sts_duration: str = field(
        default="1h",
        metadata={
            "help": "lifetime asked for RRSA credentials (STS allows 15m up to the role's maximum session)",
            "duration": True,
            "flag": False,
        },
    )
    sts_timeout: float = field(default=10.0, metadata={"help": "seconds one STS request may take", "flag": False})

    def check(self) -> None:
        if parse_duration(self.sts_duration) < 900:
            raise SettingsError(f"$RAYHISTORY_STS_DURATION: {self.sts_duration!r} is under STS's minimum of 15m")
        if self.sts_timeout <= 0:
            raise SettingsError("$RAYHISTORY_STS_TIMEOUT must be positive")

    def url(self, environ: Mapping[str, str]) -> str:
        endpoint = self.sts_endpoint.strip()
        if not endpoint:
            vpc = environ.get("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "").lower() == "true"
            region = environ.get("ALIBABA_CLOUD_STS_REGION", "")
            prefix = "sts-vpc" if vpc else "sts"
            endpoint = f"{prefix}.{region}.aliyuncs.com" if region else "sts.aliyuncs.com"
        return endpoint if "://" in endpoint else f"https://{endpoint}"


class OidcRoleCredentials:
    """RRSA: the pod's OIDC token (re-read at each exchange: the kubelet rotates it) traded for a role's STS
    credentials, kept until a third of their life (at most 15 minutes) is left."""

    kind = "rrsa"

    def __init__(
        self,
        role_arn: str,
        provider_arn: str,
        token_file: str,
        url: str,
        session_name: str,
        duration_s: int = 3600,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role_arn, self.provider_arn, self.token_file = role_arn, provider_arn, token_file
        self.url, self.session_name, self.duration_s, self.timeout_s = url, session_name, duration_s, timeout_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._renewing = threading.Lock()  # held by the one caller talking to STS
        self._current: Credentials | None = None
        self._next_refresh = 0.0
        self.exchanges = 0  # successful AssumeRoleWithOIDC calls
        self.failures = 0  # failed ones

    def refresh_at(self) -> float | None:
        return self._next_refresh

    def get(self) -> Credentials:
        now = self._clock()
        with self._lock:
            held, due = self._current, self._next_refresh
        if held is not None and now < due:
            return held
        if _valid(held, now):
            # Due but still valid: one caller renews, the others go on with the held credentials meanwhile.
            if not self._renewing.acquire(blocking=False):
                return held  # type: ignore[return-value]  # _valid() checked it is not None
        else:
            self._renewing.acquire()  # nothing valid to hand out: wait for the caller that renews
        try:
            return self._renew()
        finally:
            self._renewing.release()

    def _renew(self) -> Credentials:
        now = self._clock()
        with self._lock:
            held, due = self._current, self._next_refresh
        if held is not None and now < due:
            return held  # another caller renewed while this one waited
        try:
            fresh = self._exchange()
        except CredentialsError as e:
            with self._lock:
                self.failures += 1
                if held is not None and _valid(held, now):
                    # No gap: the held credentials still hold, so keep using them and ask again soon.
                    self._next_refresh = min(now + RETRY_S, (held.expiration or now) - 1)
                    log.warning("%s; the current credentials hold until %s", e, _iso(held.expiration or now))
                    return held
            raise
        obtained = self._clock()
        lifetime = (fresh.expiration or obtained) - obtained
        if lifetime < 2:
            raise CredentialsError(
                f"STS at {self.url} answered credentials that expire at {_iso(fresh.expiration or obtained)}, "
                "already past or within a second: is this machine's clock right?"
            )
        with self._lock:
            self.exchanges += 1
            self._current = fresh
            self._next_refresh = obtained + lifetime - min(MAX_MARGIN_S, lifetime / 3)
        return fresh

    def _exchange(self) -> Credentials:
        try:
            with open(self.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise CredentialsError(
                f"cannot read the OIDC token file {self.token_file} ($ALIBABA_CLOUD_OIDC_TOKEN_FILE): {e}; "
                "check the pod's RRSA annotation and the projected token volume"
            ) from None
        params = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": "2015-04-01",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "RoleArn": self.role_arn,
            "OIDCProviderArn": self.provider_arn,
            "OIDCToken": token,
            "RoleSessionName": self.session_name,
            "DurationSeconds": str(self.duration_s),
        }
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(
            self.url + "/",
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = _json(response.read())
        except urllib.error.HTTPError as e:
            detail = _json(e.read())
            code, message = detail.get("Code", f"HTTP {e.code}"), detail.get("Message", e.reason)
            raise CredentialsError(
                f"STS at {self.url} refused AssumeRoleWithOIDC for {self.role_arn}: {code}: {message}; "
                "check the RAM role's trust policy (the OIDC provider and the ServiceAccount) and the variables "
                + ", ".join(RRSA_VARIABLES)
            ) from None
        except (OSError, ValueError) as e:  # URLError, timeouts, a reset connection, a non-JSON answer
            raise CredentialsError(
                f"cannot reach STS at {self.url} ({type(e).__name__}: {e}); check $RAYHISTORY_STS_ENDPOINT "
                "or $ALIBABA_CLOUD_STS_REGION and the network",
                refused=False,
            ) from None
        return _parse_credentials(answer, self.url)


def _valid(c: Credentials | None, now: float) -> bool:
    """Still usable for a request signed now (a second's margin for the request's flight)."""
    return c is not None and (c.expiration is None or now < c.expiration - 1)


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_credentials(answer: Mapping[str, Any], url: str) -> Credentials:
    c = answer.get("Credentials")
    try:
        assert isinstance(c, dict)
        expiration = float(calendar.timegm(time.strptime(c["Expiration"], "%Y-%m-%dT%H:%M:%SZ")))
        return Credentials(c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"], expiration)
    except (AssertionError, KeyError, TypeError, ValueError):
        raise CredentialsError(
            f"STS at {url} answered without usable Credentials (AccessKeyId, AccessKeySecret, SecurityToken, "
            "Expiration); is $RAYHISTORY_STS_ENDPOINT an STS endpoint?"
        ) from None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def rrsa_configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(v) for v in RRSA_VARIABLES)


def from_environment(environ: Mapping[str, str] | None = None) -> CredentialSource | None:
    """RRSA when its variables are set, else static AccessKeys, else None; raises CredentialsError naming what
    is missing when RRSA is set up halfway."""
    env = os.environ if environ is None else environ
    if rrsa_configured(env):
        missing = [v for v in RRSA_VARIABLES if not env.get(v)]
        if missing:
            raise CredentialsError(
                f"RRSA is set up halfway: {', '.join(missing)} missing; ACK's pod identity webhook sets all three "
                "when the pod's ServiceAccount has the annotation pod-identity.alibabacloud.com/role-name"
            )
        try:
            sts = StsSettings.load(environ=env)
        except SettingsError as e:
            raise CredentialsError(str(e)) from None
        name = env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME") or f"rayhistory-{socket.gethostname()}"[:64]
        return OidcRoleCredentials(
            env["ALIBABA_CLOUD_ROLE_ARN"],
            env["ALIBABA_CLOUD_OIDC_PROVIDER_ARN"],
            env["ALIBABA_CLOUD_OIDC_TOKEN_FILE"],
            sts.url(env),
            name,
            int(parse_duration(sts.sts_duration)),
            sts.sts_timeout,
        )
    key_id, secret = (env.get(v, "") for v in STATIC_VARIABLES)
    if key_id and secret:
        return StaticCredentials(Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")))
    return None


def sls_provider(source: CredentialSource) -> Any:
    """The SLS SDK's credentials provider over a source: the SDK calls it as it signs each request (and puts the
    token in `x-acs-security-token`)."""
    from aliyun.log.credentials import Credentials as SlsCredentials
    from aliyun.log.credentials import CredentialsProvider

    class _Provider(CredentialsProvider):
        def get_credentials(self) -> SlsCredentials:
            c = source.get()
            return SlsCredentials(c.access_key_id, c.access_key_secret, c.security_token or None)

    return _Provider()
