"""Token authentication: Kubernetes' static token file, and the signed cookie a browser gets after logging in.

The token file is the format of kube-apiserver's --token-auth-file: one CSV record per line,
`token,user,uid[,"group1,group2"]`. Tokens are kept only as SHA-256 digests and compared in constant time.

A browser cannot add an Authorization header to the requests Ray's UI makes, so the login form exchanges a token
for a cookie: `<digest of the token>.<expiry>.<HMAC-SHA256 of both>`, signed with a key drawn at start. The
cookie names the token (not the user), so it stops working when that token leaves the file; it expires after
--auth-cookie-max-age seconds; it never carries the token itself. A restart draws a new key: browsers log in again.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import secrets
import time
from pathlib import Path

from historyserver.access.principal import AccessConfigError, Principal


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    def __init__(self, principals: dict[str, Principal]) -> None:
        self._by_digest = list(principals.items())  # (sha256 hex of the token, principal)

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def from_file(cls, path: str) -> TokenTable:
        where = f"--auth-token-file {path}"
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise AccessConfigError(f"{where}: cannot read it ({e})") from None
        return cls.parse(text, where)

    @classmethod
    def parse(cls, text: str, where: str = "token file") -> TokenTable:
        principals: dict[str, Principal] = {}
        fix = 'each line is token,user,uid[,"group1,group2"] (the format of kube-apiserver\'s --token-auth-file)'
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                (record,) = list(csv.reader(io.StringIO(line), strict=True))
            except (csv.Error, ValueError) as e:
                raise AccessConfigError(f"{where}, line {number}: not a CSV record ({e}); {fix}") from None
            if len(record) < 3:
                raise AccessConfigError(f"{where}, line {number}: {len(record)} columns, at least 3 needed; {fix}")
            token, user = record[0], record[1].strip()
            if not token.strip() or not user:
                raise AccessConfigError(
                    f"{where}, line {number}: empty {'token' if not token.strip() else 'user'}; {fix}"
                )
            groups = tuple(g.strip() for g in record[3].split(",") if g.strip()) if len(record) > 3 else ()
            key = digest(token)
            if key in principals:
                raise AccessConfigError(
                    f"{where}, line {number}: this token is already given to user "
                    f"{principals[key].user!r}; give each user a token of their own"
                )
            principals[key] = Principal(user, groups)
        if not principals:
            raise AccessConfigError(f"{where}: no tokens in it; {fix}")
        return cls(principals)

    def find(self, token_digest: str) -> Principal | None:
        """The principal whose token has this digest; every entry is compared, in constant time."""
        found = None
        for key, principal in self._by_digest:
            if hmac.compare_digest(key.encode(), token_digest.encode()):
                found = principal
        return found

    def authenticate(self, token: str) -> Principal | None:
        return self.find(digest(token))


class CookieSigner:
    def __init__(self, max_age: int, key: bytes | None = None) -> None:
        self.max_age = max_age
        self._key = key or secrets.token_bytes(32)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, token: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.max_age)
        payload = f"{digest(token)}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, value: str, now: float | None = None) -> str | None:
        """The token digest a valid, unexpired cookie names, else None."""
        token_digest, _, rest = value.partition(".")
        expires, _, signature = rest.partition(".")
        if not (token_digest and expires.isdigit() and signature):
            return None
        if not hmac.compare_digest(self._sign(f"{token_digest}.{expires}").encode(), signature.encode()):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        return token_digest
