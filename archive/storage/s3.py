"""Any S3-compatible object store through boto3: AWS S3, Alibaba OSS (S3-compatible endpoint), SeaweedFS, MinIO.

Endpoint and credentials come from the standard AWS configuration (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, ~/.aws/..., and EKS's IRSA through boto3's own web-identity provider), or, on
ACK, from RRSA (archive/credentials.py): then boto3 signs with STS credentials and their session token, refreshed
before they expire (RAYHISTORY_S3_CREDENTIALS). RAYHISTORY_S3_ADDRESSING_STYLE picks path or virtual-host
style; by default path style for an IP address or localhost endpoint, virtual-host style otherwise (as OSS needs).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from archive import credentials
from archive.credentials import CredentialSource, rrsa_configured
from archive.errors import AccessDenied, BackendUnavailable, InvalidArchiveURL, NotFound, StoreError
from archive.settings import Settings, SettingsError
from archive.storage.base import ObjectInfo, Store

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass
class S3Settings(Settings):
    """The S3 backend's settings, environment only (both commands use the backend)."""

    command = "rayhistory"
    s3_addressing_style: str = field(
        default="auto",
        metadata={
            "help": "path or virtual-host style requests; auto: path style for an IP address "
            "or localhost endpoint, virtual-host style otherwise (as OSS needs)",
            "choices": ("auto", "path", "virtual"),
            "flag": False,
        },
    )
    s3_connect_timeout: float = field(
        default=5.0,
        metadata={
            "help": "seconds to connect to the store (bounds how long an unreachable store blocks)",
            "flag": False,
        },
    )
    s3_max_attempts: int = field(default=3, metadata={"help": "attempts per request, retries included", "flag": False})
    s3_credentials: str = field(
        default="auto",
        metadata={
            "help": "aws: boto3's own chain (AWS_ACCESS_KEY_ID, IRSA, ~/.aws, instance roles); alibaba: "
            "ALIBABA_CLOUD_* RRSA or AccessKeys (for OSS); auto: alibaba when RRSA's variables are set and "
            "AWS_ACCESS_KEY_ID is not, else aws",
            "choices": ("auto", "aws", "alibaba"),
            "flag": False,
        },
    )

    def check(self) -> None:
        if self.s3_connect_timeout <= 0 or self.s3_max_attempts < 1:
            raise SettingsError(
                "RAYHISTORY_S3_CONNECT_TIMEOUT must be positive and RAYHISTORY_S3_MAX_ATTEMPTS at least 1"
            )

    @classmethod
    def from_env(cls) -> S3Settings:
        try:
            return cls.load()
        except SettingsError as e:
            raise InvalidArchiveURL(str(e)) from None


def addressing_style(endpoint: str | None, style: str = "auto") -> str:
    if style in ("path", "virtual"):
        return style
    host = urlparse(endpoint).hostname if endpoint else None
    if host and (host == "localhost" or host.replace(".", "").isdigit() or ":" in host):
        return "path"
    return "virtual"


def _alibaba_credentials(choice: str, url: str) -> CredentialSource | None:
    """The Alibaba credentials to sign with, or None for boto3's own chain."""
    if choice == "aws" or (choice == "auto" and (os.environ.get("AWS_ACCESS_KEY_ID") or not rrsa_configured())):
        return None
    try:
        source = credentials.from_environment()
    except credentials.CredentialsError as e:
        raise InvalidArchiveURL(f"{url}: {e}") from None
    if source is None:
        raise InvalidArchiveURL(
            f"{url}: RAYHISTORY_S3_CREDENTIALS=alibaba but neither RRSA ({', '.join(credentials.RRSA_VARIABLES)}) "
            f"nor AccessKeys ({', '.join(credentials.STATIC_VARIABLES)}) are set"
        )
    return source


def _botocore_session(source: CredentialSource | None) -> Any:
    """A botocore session signing with `source` (its token as x-amz-security-token), or boto3's default one."""
    import botocore.session
    from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials

    session = botocore.session.get_session()
    if source is None:
        return session

    def refresh() -> dict[str, str]:
        c = source.get()
        # botocore refreshes when this time comes: the source's own schedule, which never passes the expiry.
        due = min(source.refresh_at() or time.time() + 3600, c.expiration or time.time() + 3600)
        return {
            "access_key": c.access_key_id,
            "secret_key": c.access_key_secret,
            "token": c.security_token,
            "expiry_time": datetime.fromtimestamp(due, tz=timezone.utc).isoformat(),
        }

    class Refreshing(DeferredRefreshableCredentials):  # type: ignore[misc]
        # botocore's 15/10-minute windows assume hour-long credentials and refuse shorter ones as "still expired
        # after refresh"; the source already refreshes ahead of expiry, so refresh exactly when it asks. Deferred:
        # the first STS call happens with the first request, where a failure is a store error like any other.
        _advisory_refresh_timeout = 0
        _mandatory_refresh_timeout = 0

    method = f"alibaba-{source.kind}"

    class Provider(CredentialProvider):  # type: ignore[misc]
        METHOD = CANONICAL_NAME = method

        def load(self) -> Any:
            return Refreshing(refresh, self.METHOD)

    session.get_component("credential_provider").insert_before("env", Provider())
    return session


class S3Store(Store):
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidArchiveURL(f"invalid S3 archive URL {url!r}: expected s3://bucket[/prefix]")
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:  # the collector's minimal install
            raise InvalidArchiveURL(f"{url}: s3:// archives need boto3; pip install 'rayhistory[s3]'") from e
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/") + "/" if parsed.path.strip("/") else ""
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        settings = S3Settings.from_env()
        config = Config(
            s3={"addressing_style": addressing_style(self.endpoint, settings.s3_addressing_style)},
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
        )
        self.credentials = _alibaba_credentials(settings.s3_credentials, url)
        session = boto3.session.Session(botocore_session=_botocore_session(self.credentials))
        self._client = session.client("s3", endpoint_url=self.endpoint, config=config)

    def _where(self) -> str:
        return f"endpoint {self.endpoint or 'AWS default'}"

    def _error(self, e: Exception, action: str, key: str) -> StoreError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(e, credentials.CredentialsError):
            return (AccessDenied if e.refused else BackendUnavailable)(self.url, str(e))
        if isinstance(e, NoCredentialsError):
            return AccessDenied(self.url, "no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return NotFound(self.url, f"no object {key}")
            if code in _DENIED:
                return AccessDenied(
                    self.url, f"{action} {key or 'bucket'} was refused ({code}); check the access key and secret"
                )
            if code == "NoSuchBucket":
                # Not a missing object: the archive itself is unusable until someone creates the bucket.
                return BackendUnavailable(
                    self.url, f"bucket {self.bucket} does not exist at {self._where()}; create it first"
                )
            return BackendUnavailable(self.url, f"{action} {key or 'bucket'} failed with {code}: {e}")
        return BackendUnavailable(
            self.url,
            f"{action} {key or 'bucket'} failed: cannot reach {self._where()} ({type(e).__name__}); "
            "check AWS_ENDPOINT_URL and the network",
        )

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except Exception as e:
            raise self._error(e, "writing", key) from e

    def get(self, key: str) -> bytes:
        try:
            data: bytes = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
            return data
        except Exception as e:
            raise self._error(e, "reading", key) from e

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Servers disagree on order across '/' (SeaweedFS lists a folder before 'a-b'): sort to keep the promise.
        return iter(sorted(self._list_pages(prefix), key=lambda o: o.key))

    def _list_pages(self, prefix: str) -> Iterator[ObjectInfo]:
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._client.list_objects_v2(**kwargs)
            except Exception as e:
                raise self._error(e, "listing", prefix) from e
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][len(self.prefix) :], int(obj["Size"]), obj.get("ETag", ""))
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        names: builtins.list[str] = []
        token = None
        full = self.prefix + prefix
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": full, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._client.list_objects_v2(**kwargs)
            except Exception as e:
                raise self._error(e, "listing", prefix) from e
            names += [p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return sorted(names)
            token = page["NextContinuationToken"]

    def delete_many(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), self.delete_batch):  # DeleteObjects takes at most 1000 keys
            batch = keys[start : start + self.delete_batch]
            objects = [{"Key": self.prefix + k} for k in batch]
            try:
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            except Exception as e:
                what = batch[0] if len(batch) == 1 else f"{len(batch)} keys from {batch[0]}"
                raise self._error(e, "deleting", what) from e
            # A 200 can still refuse some keys, one by one: a deletion is complete only without Errors.
            errors = [err for err in answer.get("Errors", []) if err.get("Code") not in _MISSING]
            if errors:
                first = errors[0]
                key, code = first.get("Key", "")[len(self.prefix) :], str(first.get("Code", ""))
                detail = (
                    f"{len(errors)} of {len(batch)} keys were not deleted, first {key}: "
                    f"{code} {first.get('Message', '')}".rstrip()
                )
                if code in _DENIED:
                    raise AccessDenied(self.url, f"{detail}; check that the credentials may delete objects")
                raise BackendUnavailable(self.url, f"{detail}; run again to finish")

    def check(self) -> None:
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as e:
            raise self._error(e, "listing", "") from e
