"""The collector's topology: every source and sink keeps the same counters, on /metrics labelled by component, and a
pulled source's spool file is released only once the archive holds it whole."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from collector.stats import PREFIX
from tests.fake_session import NODE_ID, SESSION_NAME, make_session

FAMILIES = {PREFIX + f for f in ("received", "received_bytes", "sent", "sent_bytes", "dropped", "retries")}


def _samples(exposition: str) -> dict[tuple[str, str, str], float]:
    """(family, component, kind) -> value, errors summed over their types."""
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name.startswith(PREFIX) and not s.name.endswith("_created"):
                key = (s.name.removesuffix("_total"), s.labels["component"], s.labels["kind"])
                out[key] = out.get(key, 0) + s.value
    return out


def test_every_component_keeps_the_same_counters_and_the_archive_releases_spool_files(tmp_path):
    session = make_session(tmp_path)
    logs_bytes = sum(p.stat().st_size for p in (session / "logs").rglob("*") if p.is_file())
    settings = CollectorSettings(
        session_dir=str(session),
        archive=str(tmp_path / "archive"),
        cluster="c",
        namespace="ns",
        once=True,
        state_dir=str(tmp_path / "state"),
    )
    store = LocalStore(tmp_path / "archive")
    collector = Collector(settings, store, SessionDir(session))
    # What a previous run's scraper left: two files; the older no longer grows.
    spool = collector.state.spools / "metrics"
    spool.mkdir(parents=True)
    (spool / "metrics-000001.prom").write_bytes(b"# HELP up x\nup 1 1.000\n")
    (spool / "metrics-000002.prom").write_bytes(b"# HELP up x\nup 0 2.000\n")
    collector.start()
    assert collector.ship_once() > 0
    assert collector.ship_once() == 0, "a second cycle finds nothing pending"

    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    for name in ("metrics-000001.prom", "metrics-000002.prom"):
        assert archive_logs.read_file(store, node, name, source="metrics").startswith(b"# HELP up x\n")
    assert not (spool / "metrics-000001.prom").exists(), "a finished spool file is released once archived"
    assert (spool / "metrics-000002.prom").exists(), "the newest spool file is kept: its source appends to it"

    got = _samples(collector.health.metrics().decode())
    components = {(c, k) for _, c, k in got}
    assert components == {
        ("logs", "source"),
        ("grafana", "source"),
        ("metrics", "source"),
        ("api", "source"),
        ("archive", "sink"),
    }
    for component, kind in components:
        for family in FAMILIES | {PREFIX + "lag_bytes"}:
            assert (family, component, kind) in got, f"{component} {kind} lacks {family}"
    assert got[(PREFIX + "received_bytes", "logs", "source")] == logs_bytes
    shipped = logs_bytes + 2 * len(b"# HELP up x\nup 1 1.000\n")
    assert got[(PREFIX + "sent_bytes", "archive", "sink")] == shipped
    assert got[(PREFIX + "sent", "archive", "sink")] == 5  # one segment per file
    assert got[(PREFIX + "lag_bytes", "archive", "sink")] == 0
    assert got[(PREFIX + "errors", "archive", "sink")] == 0
