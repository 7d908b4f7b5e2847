"""Ray's list_placement_groups over one session's placement_groups table (compaction/placement_groups.py)."""

from __future__ import annotations

import json
from typing import Any

from historyserver.errors import BadRequest
from historyserver.queries.session_db import Filter, Page, SessionDB, checked_key

# Ray's PlacementGroupState: the filterable columns, and the columns shown without detail=1.
FILTER_COLUMNS = {"placement_group_id", "name", "creator_job_id", "state", "is_detached"}
SUMMARY_COLUMNS = ("placement_group_id", "name", "creator_job_id", "state")


def list_placement_groups(db: SessionDB, filters: list[Filter], detail: bool, limit: int) -> Page:
    """Filtered, sorted by id, cut at limit, as Ray's state aggregator does; total counts every group."""
    groups = [json.loads(r[0]) for r in db.query("SELECT record FROM placement_groups ORDER BY placement_group_id")]
    matched = [g for g in groups if all(_matches(g, f) for f in filters)]
    rows = matched[:limit]
    if not detail:
        rows = [{k: g.get(k) for k in SUMMARY_COLUMNS} for g in rows]
    return Page(total=len(groups), num_filtered=len(matched), rows=rows)


def _matches(group: dict[str, Any], f: Filter) -> bool:
    """Ray's do_filter: strings compare case-insensitively, booleans are parsed from the value."""
    key = checked_key(f, FILTER_COLUMNS, "placement groups")
    value = group.get(key)
    if isinstance(value, bool):
        if f.value.lower() not in ("true", "false", "1", "0"):
            raise BadRequest(f"filter value {f.value!r} for {key} must be true or false")
        equal = value == (f.value.lower() in ("true", "1"))
    elif isinstance(value, str):
        equal = value.lower() == f.value.lower()
    else:
        equal = value == f.value  # null (not known): never equal to a given value
    return equal if f.predicate == "=" else not equal
