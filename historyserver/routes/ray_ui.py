"""(being written)"""

from __future__ import annotations

from fastapi import APIRouter

from historyserver.routes.deps import SESSION_PREFIX

router = APIRouter(prefix=SESSION_PREFIX)
