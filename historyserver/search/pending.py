"""Searches across sessions never compact inline (minutes per big session, past any timeout): a session whose
tables are not built yet is handed to the background compactor and left out of this answer, which says so
(`complete: false`, a warning naming them, `pending_sessions`). Asking again once they are built finds their hits.
A search of one session still compacts it: that is the session's first open, as everywhere else in the UI."""

from __future__ import annotations

from collections.abc import Callable

from archive.layout import SessionRef

NAMED = 3  # sessions named in the warning; the count says how many more


class Pending:
    """Decides, per session of one request, whether it is searched now or left for the background compactor."""

    def __init__(
        self,
        ready: Callable[[SessionRef], bool],
        queue: Callable[[SessionRef], object],
        error: Callable[[SessionRef], str | None] = lambda ref: None,
    ) -> None:
        """`error`: why the session's last background compaction failed, if it did."""
        self._ready, self._queue, self._error = ready, queue, error
        self.refs: list[SessionRef] = []

    def skip(self, ref: SessionRef) -> bool:
        """True (and queued for compaction) when the session's tables are not built yet."""
        if self._ready(ref):
            return False
        self._queue(ref)
        self.refs.append(ref)
        return True

    def warnings(self) -> list[str]:
        """The answer's warnings about the sessions left out: how many and which, then any that failed before."""
        if not self.refs:
            return []
        n = len(self.refs)
        names = ", ".join(r.id for r in self.refs[:NAMED]) + (f" and {n - NAMED} more" if n > NAMED else "")
        out = [
            f"{n} session{'s are' if n > 1 else ' is'} still being indexed ({names}): "
            f"{'their' if n > 1 else 'its'} hits are not in this answer yet; ask again in a few seconds"
        ]
        failed = [(r.id, e) for r in self.refs if (e := self._error(r))]
        for sid, error in failed[:NAMED]:
            out.append(
                f"the last compaction of {sid} failed ({error}); it is tried again now, and opening the session "
                "shows the error in full"
            )
        return out
