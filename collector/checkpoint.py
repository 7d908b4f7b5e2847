"""The collector's local checkpoint: which file (by inode) each archived generation belongs to.

The archive says how far each generation was shipped; only this file says which file on disk continues it, so a
restarted collector can tell a rotated file (x.log now named x.log.1) from a new one. Written atomically (temp
file, fsync, rename) in a versioned format; an unreadable or older checkpoint is ignored, never trusted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from archive.atomic import write_atomic

log = logging.getLogger("rayhistory.collector")
CHECKPOINT_VERSION = 1


def load(path: Path) -> dict[tuple[str, str, int], int]:
    """(source, archived path, epoch) -> inode, from the last checkpoint."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable checkpoint %s (%s): files renamed while stopped are archived again", path, e)
        return {}
    if doc.get("version") != CHECKPOINT_VERSION:
        return {}
    return {(g["source"], g["path"], int(g["epoch"])): int(g["inode"]) for g in doc.get("generations", [])}


def save(path: Path, inodes: dict[tuple[str, str, int], int]) -> None:
    doc = {
        "version": CHECKPOINT_VERSION,
        "generations": [{"source": s, "path": p, "epoch": e, "inode": i} for (s, p, e), i in sorted(inodes.items())],
    }
    write_atomic(path, json.dumps(doc).encode())
