"""Which sessions go: a pure decision over the catalog's entries, so every rule is tested without a store.

A session's age runs from its end (for an unfinished one, its collector's last heartbeat), not its start. A
running session is never deleted, whatever the flags. The newest `keep_last` sessions of each (namespace,
cluster) stay; with `keep_failed`, a session that failed (or whose failures are unknown) stays until that older.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from archive.layout import SessionRef
from archive.manifest import RUNNING
from historyserver.catalog import SessionEntry
from historyserver.retention.durations import format_age
from historyserver.retention.failures import FailureEvidence

DELETE, KEEP, REFUSE = "delete", "keep", "refuse"


@dataclass(frozen=True)
class Policy:
    older_than_ms: int
    keep_failed_ms: int | None = None
    keep_last: int = 0
    namespace: str | None = None
    cluster: str | None = None

    def selects(self, entry: SessionEntry) -> bool:
        return self.selects_ref(entry.ref)

    def selects_ref(self, ref: SessionRef) -> bool:
        return (self.namespace is None or ref.namespace == self.namespace) and (
            self.cluster is None or ref.cluster == self.cluster
        )


@dataclass(frozen=True)
class Verdict:
    entry: SessionEntry
    action: str  # DELETE, KEEP (old enough, but a flag keeps it) or REFUSE (running)
    reason: str
    age_ms: int  # since its end; for a refused running session, since its start


def age_ms(entry: SessionEntry, now_ms: int) -> int:
    m = entry.manifest
    end = entry.end_ms or m.last_seen_ms or m.start_ms or 0
    return now_ms - end


def decide(
    entries: Iterable[SessionEntry], policy: Policy, now_ms: int, failures: Callable[[SessionEntry], FailureEvidence]
) -> list[Verdict]:
    """A verdict for each selected session older than `older_than` (running ones: started before it), oldest
    first; younger sessions are not mentioned. `failures` is asked only when `keep_failed` could keep one."""
    groups: dict[tuple[str, str], list[SessionEntry]] = defaultdict(list)
    for e in entries:
        if policy.selects(e):
            groups[(e.ref.namespace, e.ref.cluster)].append(e)
    verdicts = []
    for (namespace, cluster), group in groups.items():
        group.sort(key=lambda e: (e.manifest.start_ms or 0, e.ref.session), reverse=True)  # newest first
        for rank, e in enumerate(group):
            age = age_ms(e, now_ms)
            if e.status == RUNNING:
                since_start = now_ms - (e.manifest.start_ms or now_ms)
                if since_start >= policy.older_than_ms:
                    heard = format_age(now_ms - (e.manifest.last_seen_ms or now_ms))
                    verdicts.append(Verdict(e, REFUSE, f"running (heartbeat {heard} ago)", since_start))
                continue
            if age < policy.older_than_ms:
                continue
            if rank < policy.keep_last:
                verdicts.append(Verdict(e, KEEP, f"one of the newest {policy.keep_last} of {namespace}/{cluster}", age))
                continue
            if policy.keep_failed_ms is not None and age < policy.keep_failed_ms:
                found = failures(e)
                if not found.known_clean:
                    verdicts.append(
                        Verdict(e, KEEP, f"{found.how} (--keep-failed {format_age(policy.keep_failed_ms)})", age)
                    )
                    continue
            verdicts.append(Verdict(e, DELETE, e.status, age))
    verdicts.sort(key=lambda v: (-v.age_ms, v.entry.ref.id))
    return verdicts
