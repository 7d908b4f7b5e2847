"""Ray's log-line rules column-wise (Arrow, RE2 in C++): the header spellings and field cutting that
archive/log_records.py's LogLineParser defines line by line, for readers that parse whole chunks at once
(the collector's SLS sink, compaction's log tables). Where a chunk is not plain, callers fall back to
LogLineParser, which stays the definition.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = r"^(?:\[\d{4}-\d{2}-\d{2} |\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\t)"
# LogLineParser's C++ and Python headers (parse.py), spelt strictly: the separator after the caller
# with its space, no other ": " or " -- " before it, so that splitting at the first separator finds the message.
CPP_STRICT = r"^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [DIWEF] \d+ \d+\] (?:\([^)\s]+\) )?[^\s:]+:\d+: "
PY_STRICT = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\t[A-Z]+ [^\s:]+:\d+ -- "
ANSI = r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]"
CPP_LEVELS = {"D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "F": "FATAL"}


MARKER_KEYS = ("job_id", "task_name", "actor_name")


def headed(
    body: pa.Array, cpp: bool, component: str, pid: int | None, ansi: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, str]] | None:
    """(seconds, nanos, text columns, constants) of rows that all match CPP_STRICT (cpp) or PY_STRICT."""
    seconds = epoch_seconds(pc.utf8_slice_codeunits(body, 1, 20) if cpp else pc.utf8_slice_codeunits(body, 0, 19))
    if seconds is None:
        return None
    ms = pc.utf8_slice_codeunits(body, 21, 24) if cpp else pc.utf8_slice_codeunits(body, 20, 23)
    nanos = ms.cast(pa.uint32()).to_numpy().astype(np.uint32) * np.uint32(1_000_000)
    head_msg = pc.split_pattern(body, ": " if cpp else " -- ", max_splits=1)
    head, msg = pc.list_element(head_msg, 0), pc.list_element(head_msg, 1)
    text_cols = {"message": plain(msg) if ansi else msg}
    constants: dict[str, str] = {}
    if cpp:
        # head: `[date time,ms L pid tid] (component) file:line` (the component is optional)
        # (a trailing space makes a list of 4 or 5 words: list_element refuses an index past a list's end)
        words = pc.split_pattern(pc.binary_join_element_wise(pc.utf8_slice_codeunits(head, 27, 1 << 30), "", " "), " ")
        named = pc.equal(pc.list_value_length(words), 5)
        comp = pc.list_element(words, 2)
        text_cols["level"] = map_values(pc.utf8_slice_codeunits(body, 25, 26), CPP_LEVELS)
        text_cols["component"] = pc.if_else(named, pc.utf8_slice_codeunits(comp, 1, -1), pa.scalar(component))
        text_cols["caller"] = pc.if_else(named, pc.list_element(words, 3), comp)
        # str(int(x)) in LogLineParser: the same text unless Ray zero-padded, which it does not
        text_cols["pid"] = pc.list_element(words, 0)
        text_cols["tid"] = pc.utf8_slice_codeunits(pc.list_element(words, 1), 0, -1)
    else:
        # head: `date time,ms<TAB>LEVEL file:line`
        words = pc.split_pattern(pc.utf8_slice_codeunits(head, 24, 1 << 30), " ", max_splits=1)
        text_cols["level"] = pc.list_element(words, 0)
        text_cols["caller"] = pc.list_element(words, 1)
        constants["component"] = component
        if pid is not None:
            constants["pid"] = str(pid)
    return seconds, nanos, text_cols, constants


def plain(text: pa.Array) -> pa.Array:
    """Text without ANSI escape sequences (parse.py's ANSI, in RE2)."""
    return pc.replace_substring_regex(text, ANSI, "")


def epoch_seconds(stamps: pa.Array) -> np.ndarray | None:
    """Local-time `YYYY-mm-dd HH:MM:SS` stamps as epoch seconds (Ray writes the node's local time); mktime once
    per distinct second, as LogLineParser does."""
    distinct = pc.unique(stamps)
    epochs = []
    for s in distinct.to_pylist():
        try:
            epochs.append(int(time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S"))))
        except ValueError:
            return None
    index = pc.index_in(stamps, value_set=distinct).to_numpy()
    found: np.ndarray = np.asarray(epochs, np.int64)[index]
    return found


def map_values(col: pa.Array, mapping: dict[str, str]) -> pa.Array:
    keys = pa.array(list(mapping))
    return pa.array(list(mapping.values())).take(pc.index_in(col, value_set=keys))
