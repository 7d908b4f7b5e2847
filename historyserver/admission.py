"""Admission of heavy work (PromQL queries, compactions): a bounded number at once, a bounded wait for a slot,
then 503 with Retry-After, so that a burst of expensive requests is refused instead of piling up in memory."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from historyserver.errors import Overloaded


class Gate:
    def __init__(self, what: str, slots: int, wait_s: float, setting: str) -> None:
        self.what = what
        self.slots = slots
        self.wait_s = wait_s
        self.setting = setting
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.running = 0
        self.refused = 0

    def hold(self) -> Ticket:
        """A slot for work that outlives the route function (a streamed answer): release it when done."""
        cm = self.slot()
        cm.__enter__()
        return Ticket(cm)

    @contextmanager
    def slot(self, patient: bool = False) -> Iterator[None]:
        """Hold a slot for the duration of the block; `patient` waits without bound (background work)."""
        if not self._sem.acquire(timeout=None if patient else self.wait_s):
            with self._lock:
                self.refused += 1
            raise Overloaded(
                f"the server is busy: {self.slots} {self.what} already running (--{self.setting}) and none "
                f"finished within {self.wait_s:g} s; retry in a few seconds",
                retry_after=max(1, math.ceil(self.wait_s)),
            )
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._sem.release()


class Ticket:
    """A held slot, released once however many times release() is called (by the stream's end, and by the
    response's background task if the client went away before the stream started)."""

    def __init__(self, cm) -> None:
        self._cm = cm
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._cm.__exit__(None, None, None)

    def stream(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            self.release()
