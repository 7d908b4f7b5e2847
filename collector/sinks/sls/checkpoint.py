"""The SLS sink's checkpoint: per log file, the generation, inode and acknowledged offset (with the marker lines'
state, the line number and the next `__pack_id__` counter there), so a killed collector resumes at the last acknowledged record. Versioned JSON, written atomically;
unlike the archive's checkpoint it cannot be rebuilt from the destination, so an unusable one stops the collector
with a hint instead of silently resending everything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archive.atomic import write_atomic
from collector.errors import CheckpointError

CHECKPOINT_VERSION = 2
# Version 1 had no line number nor pack counter: the sink counts the lines up to the offset and starts the counter
# at 0 (context across that upgrade may interleave; nothing is resent).
READABLE_VERSIONS = (1, 2)


def load(path: str | Path) -> dict[str, dict[str, Any]]:
    """path -> {path, generation, inode, offset, markers, line, pack}; empty when there is no checkpoint yet."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read the SLS checkpoint {path}: {e}; delete it to send every file "
            "again from the start (readers drop repeats by __dedup__)"
        ) from e
    if data.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"SLS checkpoint {path} has version {data.get('version')!r}, this collector "
            f"writes {CHECKPOINT_VERSION}; delete it to resend from the start"
        )
    return {f["path"]: f for f in data["files"]}


def save(path: str | Path, node: str, project: str, logstore: str, files: dict[str, dict[str, Any]]) -> None:
    body = json.dumps(
        {
            "version": CHECKPOINT_VERSION,
            "node": node,
            "project": project,
            "logstore": logstore,
            "files": sorted(files.values(), key=lambda f: f["path"]),
        },
        indent=1,
    ).encode()
    write_atomic(path, body)
