"""Writes Ray's dashboards with a datasource variable (historyserver.grafana) into dashboards/ray/.

    python dashboards/build.py SOURCE_DIR [--out DIR] [--datasource NAME]

SOURCE_DIR holds the dashboards Ray generated for a session: a Ray session's `metrics/grafana/dashboards/`, a
session's archived copy, or ../shared/reference/ray-2.60/grafana/generated/ (from which dashboards/ray/ is built).
Every `*.json` there is rewritten; file names are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from historyserver.grafana import ARCHIVE_DATASOURCE, DashboardError, with_datasource_variable  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "ray"


def render(dashboard: dict) -> str:
    """The file text: 2-space JSON in Ray's key order, so a rebuild from the same input is byte-identical."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def build(source: Path, out: Path, datasource: str = ARCHIVE_DATASOURCE) -> list[Path]:
    files = sorted(source.glob("*.json"))
    if not files:
        raise SystemExit(
            f"no *.json dashboards in {source}; pass the folder of Ray's generated dashboards "
            f"(a session's metrics/grafana/dashboards/)"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        try:
            dashboard = with_datasource_variable(json.loads(path.read_text()), datasource)
        except (ValueError, DashboardError) as e:
            raise SystemExit(f"{path}: {e}") from None
        target = out / path.name
        target.write_text(render(dashboard))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of Ray's generated dashboards (*.json)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--datasource",
        default=ARCHIVE_DATASOURCE,
        help=f"the datasource variable's default (default {ARCHIVE_DATASOURCE!r})",
    )
    args = parser.parse_args(argv)
    for path in build(args.source, args.out, args.datasource):
        print(path)


if __name__ == "__main__":
    main()
