"""A request's principal and the namespaces it may see."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PARALLEL_DECISIONS = 8


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
    decided at most once per request, so a policy that calls out (a SubjectAccessReview) is asked once."""

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
            known = self._answers.get(namespace)
        if known is None:
            known = bool(self.decide(self.principal, namespace))
            with self._lock:
                self._answers[namespace] = known
        return known

    def decide_all(self, namespaces: Iterable[str]) -> None:
        """Decide many namespaces at once, a few in parallel (a listing asks every namespace the archive holds)."""
        if self.decide is None:
            return
        with self._lock:
            todo = sorted(set(namespaces) - set(self._answers))
        if len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_DECISIONS, len(todo))) as pool:
                list(pool.map(self.allows, todo))  # the first error (API unreachable) is raised here


def everything() -> Access:
    """Access without authorization (--authz none): every namespace."""
    return Access(ANONYMOUS)
