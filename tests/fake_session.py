"""A session directory laid out the way Ray lays it out, for collector tests that need no running Ray."""

from __future__ import annotations

from pathlib import Path

SESSION_NAME = "session_2026-11-25_20-59-21_325155_1996"
NODE_ID = "152f29351ecf6d5d81f022be6d4ab8b32133446602b226bf41ce0cf1"


def make_session(root: Path, head: bool = True) -> Path:
    session = root / SESSION_NAME
    (session / "logs" / "events").mkdir(parents=True)
    (session / "logs" / "export_events").mkdir()
    (session / f"metrics_export_port_{NODE_ID}").write_text("34527")
    if head:
        (session / "logs" / "gcs_server.out").write_bytes(
            b"[2026-11-25 20:59:21,342 I 1998 1998] (gcs_server) gcs_server_main.cc:98: Ray cluster metadata "
            b"ray_version=2.60.0 ray_commit=b7f4259e\n"
        )
    (session / "logs" / "raylet.out").write_bytes(
        b"[2026-11-25 20:59:24,783 I 2288 2288] (raylet) main.cc:711: "
        b"Setting node ID node_id=" + NODE_ID.encode() + b"\n"
    )
    (session / "logs" / "events" / "event_GCS.log").write_bytes(b'{"event_id": "1"}\n')
    return session
