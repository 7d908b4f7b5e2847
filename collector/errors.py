"""Every error the collector raises on purpose, in one tree (httpx's habit): the CLI catches `CollectorError`.

    CollectorError
    ├── InvalidSettings     a setting is missing, contradicts another or cannot be used (a port in use)
    ├── NotARaySession      the session directory is missing or is not Ray's (also a ValueError)
    ├── NodeIdUnknown       Ray never wrote this node's id: is Ray running here?
    ├── FlushIncomplete     the final upload missed its deadline; nothing was marked ended
    ├── StateDirError       the collector's own state (checkpoints, spools) cannot be written
    ├── CheckpointError     a local checkpoint exists but cannot be used (the SLS sink's)
    └── SpoolError          the events spool cannot store a batch (SpoolFull: above its bound)

The archive's own errors (archive.errors.ArchiveError: store unreachable, refused, ...) are the archive package's
tree, shared with the history server; the CLI catches that base too.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of the collector's errors; the message says what to do next."""


class InvalidSettings(CollectorError, ValueError):
    pass


class NotARaySession(CollectorError, ValueError):
    """The path is missing or is not a Ray session directory."""


class NodeIdUnknown(CollectorError):
    pass


class FlushIncomplete(CollectorError):
    pass


class StateDirError(CollectorError):
    pass


class CheckpointError(CollectorError):
    """A checkpoint file exists but cannot be used."""


class SpoolError(CollectorError):
    """The spool cannot do what was asked; nothing of the batch was acknowledged."""


class SpoolFull(SpoolError):
    """Storing the batch would pass the spool's bound: ship and release files, or raise the bound, then retry."""

    def __init__(self, size: int, needed: int, bound: int) -> None:
        super().__init__(
            f"the spool holds {size} bytes; {needed} more would pass its bound of {bound} bytes "
            "(files are released once shipped; retry later)"
        )
        self.size, self.needed, self.bound = size, needed, bound
