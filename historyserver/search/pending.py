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

    def __init__(self, ready: Callable[[SessionRef], bool], queue: Callable[[SessionRef], object]) -> None:
        self._ready, self._queue = ready, queue
        self.refs: list[SessionRef] = []

    def skip(self, ref: SessionRef) -> bool:
        """True (and queued for compaction) when the session's tables are not built yet."""
        if self._ready(ref):
            return False
        self._queue(ref)
        self.refs.append(ref)
        return True

    def warning(self) -> str | None:
        if not self.refs:
            return None
        n = len(self.refs)
        names = ", ".join(r.id for r in self.refs[:NAMED]) + (f" and {n - NAMED} more" if n > NAMED else "")
        return (
            f"{n} session{'s are' if n > 1 else ' is'} still being indexed ({names}): "
            f"{'their' if n > 1 else 'its'} hits are not in this answer yet; ask again in a few seconds"
        )
