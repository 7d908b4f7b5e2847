"""How the server process allocates: set at start (`rayhistory serve`), before the libraries and threads that allocate.

A query's working memory is a burst (a few row groups decoded, a step grid per series, the JSON answer) freed when
the answer is sent; what matters is that the process gives it back, so that the next burst does not stack on the
last one's leftovers (issue 16: the PromQL dashboard benchmark measures the server's peak RSS):
- Arrow's buffers come from the C library's malloc rather than pyarrow's bundled mimalloc, which keeps freed
  segments for reuse (~25 MiB more after one read of a day of 50 nodes' samples, measured). Parquet's readers take
  Arrow's C++ default pool, chosen once when pyarrow loads: hence an environment variable, set by the command line
  before it imports any subcommand (rayhistory/cli.py); pa.set_memory_pool only moves pyarrow's own allocations;
- glibc serves arrays above a fixed 256 KiB by mmap, returned to the system on free. Its default threshold grows
  (up to 32 MiB) after the first large free, after which freed arrays stay in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("rayhistory.memory")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 256 * 1024
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def before_imports() -> None:
    """For the server's process, before pyarrow loads (a value the operator set wins)."""
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def tune() -> None:
    """Arrow on the system allocator (what before_imports could not reach when pyarrow was loaded first), large
    blocks mmapped: best effort (another libc keeps its defaults)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        log.info("not glibc: malloc keeps its defaults")
        return
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        log.info("mallopt(M_MMAP_THRESHOLD) refused: malloc keeps its defaults")
