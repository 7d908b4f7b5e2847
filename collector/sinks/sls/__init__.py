"""The SLS sink: the session's log lines, parsed into records, streamed to an Alibaba Cloud SLS logstore.

    client.py      the SDK's signed transport, one attempt per request (SlsError)
    wire.py        LogGroup protobuf, encoded column-wise (byte-identical to the SDK's)
    parse.py       Ray's log line formats -> records (LogLineParser, the definition)
    columns.py     the common case of parse.py, column-wise (Arrow), and records as columns
    checkpoint.py  per file: generation, inode, acknowledged offset
    sink.py        the engine: a reader and a sender thread, backpressure, rate limit, retries
"""

from __future__ import annotations

from collector.sinks.sls.client import SlsError, _OneAttemptClient
from collector.sinks.sls.columns import records_columns
from collector.sinks.sls.sink import SlsConfig, SlsCounters, SlsSink, file_id, hash_key

__all__ = ["SlsConfig", "SlsCounters", "SlsError", "SlsSink", "_OneAttemptClient", "file_id", "hash_key",
           "records_columns"]
