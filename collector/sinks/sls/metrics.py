"""The SLS metrics sink: every scrape the collector takes (the `metrics` spool, archive/metrics_blocks.py), also
sent to an SLS MetricStore by Prometheus remote write (remote_write.py), so that Grafana reads a live cluster's
metrics from SLS with Ray's own dashboards.

Series keep exactly the labels the archive has: `instance`, `job` and `ray_io_cluster` from the scraper, Ray's own
`SessionName`. Requests hold at most `max_samples` samples, in file order, so each series' samples arrive in time
order; a request resent after a crash repeats samples with the same timestamps and values, which a Prometheus
store takes as no change. Delivery, retries and the checkpoint are shipper.py's: a spool file is released only once
the MetricStore acknowledged all of it. Status 4xx other than 401, 403, 404, 408 and 429 is final (remote write's rule):
that request is dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from archive import metrics_blocks
from collector.sinks.sls import remote_write
from collector.sinks.sls.shipper import FileShipper, Refused, Request, Retry, Track

log = logging.getLogger("rayhistory.collector.sls")

_RETRIED = {401, 403, 404, 408, 429}  # credentials rotated, store not yet created, quota: worth another try


class SlsMetricsSink(FileShipper):
    name = "sls_metrics"
    inputs = frozenset({metrics_blocks.SOURCE})

    def __init__(
        self,
        url: str,
        authorization: str,
        folders: dict[str, Path],
        checkpoint_path: Path,
        node: str,
        proxy: str | None = None,
        timeout: float = 30.0,
        max_samples: int = 5000,
        **kw: Any,
    ) -> None:
        super().__init__(folders, checkpoint_path, node, **kw)
        self.url, self.authorization, self.timeout, self.max_samples = url, authorization, timeout, max_samples
        self.opener = remote_write.opener(proxy)
        self.encoder = remote_write.Encoder()
        self.bad_lines = 0

    def wants(self, source: str, path: str) -> bool:
        return source == metrics_blocks.SOURCE

    def encode(self, track: Track, lines: list[tuple[int, bytes]], end: int) -> Iterable[Request]:
        series: list[bytes] = []
        for offset, line in lines:
            try:
                ts = self.encoder.timeseries(line.decode("utf-8"))
            except (remote_write.BadLine, UnicodeDecodeError) as e:
                self.bad_lines += 1
                self.counters.errors_by_type["unreadable"] = self.bad_lines
                log.warning("%s: a sample line of %s not sent (%s); the archive keeps it", self.name, track.path, e)
                continue
            if ts is None:
                continue
            if len(series) >= self.max_samples:
                yield Request(remote_write.compress(b"".join(series)), len(series), offset)
                series = []
            series.append(ts)
        if series:
            yield Request(remote_write.compress(b"".join(series)), len(series), end)

    def send(self, payload: bytes) -> None:
        try:
            remote_write.post(self.opener, self.url, payload, self.authorization, self.timeout)
        except remote_write.RemoteWriteError as e:
            if 400 <= e.status < 500 and e.status not in _RETRIED:
                raise Refused(str(e)) from None
            raise Retry(str(e), quota=e.status == 429 or (e.status == 403 and "Quota" in str(e))) from None
