"""A request's principal and the namespaces it may see."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable


class AccessConfigError(Exception):
    """An authentication or authorization setting the server cannot start with (printed, exit 2)."""


@dataclass(frozen=True)
class Principal:
    user: str
    groups: tuple[str, ...] = ()


ANONYMOUS = Principal("system:anonymous")


@dataclass
class Access:
    """What one request may see. `decide` answers for a namespace (None: every namespace); each namespace is
    asked at most once per request, so a policy that calls out (a SubjectAccessReview) is asked once."""

    principal: Principal
    decide: Callable[[Principal, str], bool] | None = None
    _answers: dict[str, bool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def everything(self) -> bool:
        return self.decide is None

    def allows(self, namespace: str) -> bool:
        if self.decide is None:
            return True
        with self._lock:
            if namespace not in self._answers:
                self._answers[namespace] = bool(self.decide(self.principal, namespace))
            return self._answers[namespace]


def everything() -> Access:
    """Access without authorization (--authz none): every namespace."""
    return Access(ANONYMOUS)
