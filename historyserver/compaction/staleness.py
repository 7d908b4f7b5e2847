"""Prometheus staleness markers derived from the archived scrape blocks (archive/FORMAT.md, the `metrics` source).

A live Prometheus writes a staleness marker (a NaN with STALE_NAN's bits) for a series at the timestamp of the first
scrape of its target that no longer contains it, and for every series of a target at a failed scrape. The archive
holds the scrapes but no markers, so the compaction derives them the same way: per node and per target (the
`instance` label of the block's `up` sample), a series present in the target's previous block and absent from its
next block gets a marker at that block's `up` timestamp. A failed scrape is a block holding only `up` (0) and the
two other per-scrape series, so this one rule also marks everything of the last good scrape stale at the failure,
and the next good scrape starts from that near-empty set. Nothing is marked after a target's last block: the archive
cannot tell a target that vanished from a session that ended (Prometheus would mark at its scrape loop's stop).

Column-wise, one file at a time: each (series, block) pair is one int64 code; a pair whose series is missing from
the target's next block is a marker. A target's last block of a file is carried to the next file of the node.
Blocks without a readable `up` sample (a damaged block) are not scrapes here: they neither mark nor reset anything.
"""

from __future__ import annotations

import numpy as np

from historyserver.compaction.openmetrics import SeriesTable
from historyserver.promql.model import STALE_NAN

# Markers sort after every real sample in the dedup (`arg_min(value, seq)`): a real sample at the same (series, ts),
# e.g. from a range shipped twice, always wins over a marker.
MARKER_SEQ = 1 << 62


class Staleness:
    """One node's scrape targets: the series set of each target's latest block, across that node's files."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self.target_of = np.zeros(0, np.int64)  # tmp id -> target code of an `up` series, -1 for any other series
        self.codes: dict[str, int] = {}
        self.prev: dict[int, np.ndarray] = {}  # target code -> sorted tmp ids of its latest block

    def next_node(self) -> None:
        self.prev.clear()

    def _targets(self, ids: np.ndarray) -> np.ndarray:
        keys = self.table.keys
        if len(self.target_of) < len(keys):
            new = []
            for name, labels in keys[len(self.target_of) :]:
                if name != "up":
                    new.append(-1)
                    continue
                instance = dict(labels).get("instance", "")
                new.append(self.codes.setdefault(instance, len(self.codes)))
            self.target_of = np.concatenate([self.target_of, np.array(new, np.int64)])
        return self.target_of[ids]

    def markers(
        self, ids: np.ndarray, ts: np.ndarray, line_no: np.ndarray, block_lines: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Markers for one file's samples (tmp ids, ts, line numbers in line order; blocks start at block_lines):
        (tmp ids, ts, line number of the block that dropped the series), updating the carried per-target state."""
        none = (np.zeros(0, np.int64),) * 3
        n_blocks = len(block_lines)
        if not len(ids) or not n_blocks:
            return none
        blk = np.searchsorted(block_lines, line_no, "right") - 1
        up = np.flatnonzero(self._targets(ids) >= 0)
        up_blocks, first = np.unique(blk[up], return_index=True)  # each block's first `up` sample
        block_target = np.full(n_blocks, -1, np.int64)
        block_ts = np.zeros(n_blocks, np.int64)
        block_target[up_blocks] = self.target_of[ids[up[first]]]
        block_ts[up_blocks] = ts[up[first]]

        # Each scrape block's next block of the same target; a target's carried set is a virtual block before its
        # first block here.
        scrapes = up_blocks  # increasing file order
        by_target = scrapes[np.argsort(block_target[scrapes], kind="stable")]
        tgt = block_target[by_target]
        carried = [t for t in np.unique(tgt).tolist() if t in self.prev]
        nb = n_blocks + len(carried)
        nxt = np.full(nb, -1, np.int64)
        same = tgt[1:] == tgt[:-1]
        nxt[by_target[:-1][same]] = by_target[1:][same]
        starts = np.concatenate([[True], ~same])
        first_of = dict(zip(tgt[starts].tolist(), by_target[starts].tolist()))
        last_of = dict(
            zip(tgt[np.concatenate([~same, [True]])].tolist(), by_target[np.concatenate([~same, [True]])].tolist())
        )
        parts = []
        for j, t in enumerate(carried):
            nxt[n_blocks + j] = first_of[t]
            parts.append(self.prev[t] * nb + (n_blocks + j))
        in_scrape = block_target[blk] >= 0
        parts.append(ids[in_scrape] * nb + blk[in_scrape])
        pairs = np.unique(np.concatenate(parts))  # sorted by (series, block)
        s, b = pairs // nb, pairs % nb

        for t, last in last_of.items():
            self.prev[t] = s[b == last]  # sorted: pairs are ordered by series first
        then = nxt[b]
        has_next = then >= 0
        s, then = s[has_next], then[has_next]
        want = s * nb + then
        at = np.minimum(np.searchsorted(pairs, want), len(pairs) - 1)
        gone = pairs[at] != want
        if not gone.any():
            return none
        return s[gone], block_ts[then[gone]], block_lines[then[gone]]


def with_markers(
    ids: np.ndarray,
    ts: np.ndarray,
    values: np.ndarray,
    seq: np.ndarray,
    line_no: np.ndarray,
    marks: tuple[np.ndarray, np.ndarray, np.ndarray],
    seq_base: int,
):
    """The samples (in line order) with the markers inserted where their block starts, so each series' rows stay
    in arrival order. Markers' seq is offset by MARKER_SEQ so that real samples win the dedup."""
    m_ids, m_ts, m_line = marks
    if not len(m_ids):
        return ids, ts, values, seq
    at = np.searchsorted(line_no, m_line, "left")
    return (
        np.insert(ids, at, m_ids),
        np.insert(ts, at, m_ts),
        np.insert(values, at, np.full(len(m_ids), STALE_NAN)),
        np.insert(seq, at, m_line + seq_base + MARKER_SEQ),
    )


__all__ = ["MARKER_SEQ", "Staleness", "with_markers"]
