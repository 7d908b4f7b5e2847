"""Ray's ids and times as its REST API shows them: events carry base64 ids and string integers."""

from __future__ import annotations

import base64
import binascii


def hex_id(value: str | None) -> str | None:
    """base64 of the binary id (as in events) to Ray's lowercase hex; empty means absent."""
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value.lower() if all(c in "0123456789abcdefABCDEF" for c in value) else None


def ms(value: str | int | None) -> int | None:
    if value in (None, "", "0", 0):
        return None
    return int(value)
