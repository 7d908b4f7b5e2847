"""What a fleet query reads and whether it can run per chunk of sessions, from DuckDB's own parse of it
(json_serialize_sql): no second SQL parser to disagree with the engine that runs the query."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from archive.compacted import TABLE_NAMES

SESSION_COLUMNS = ("session_id", "namespace", "cluster")  # added to every table's rows


class QueryError(ValueError):
    """The query cannot run: DuckDB's message, or what it names that does not exist, and what to do."""


@dataclass(frozen=True)
class Plan:
    sql: str
    tables: frozenset[str]  # the compacted tables it reads
    ast: dict[str, Any]


def plan(sql: str) -> Plan:
    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    if tree.get("error"):
        message = tree.get("error_message", "")
        if "Only SELECT" in message:
            message = "only a query (SELECT, WITH ... SELECT) can be asked; the archive is read-only here"
        raise QueryError(message)
    if len(tree["statements"]) != 1:
        raise QueryError(f"give one query, not {len(tree['statements'])} statements")
    ast = tree["statements"][0]["node"]
    ctes = {name for node in _nodes(ast) for name in _cte_names(node)}
    named = {n["table_name"] for n in _nodes(ast) if n.get("type") == "BASE_TABLE" and not n.get("schema_name")}
    unknown = sorted(named - ctes - set(TABLE_NAMES))
    if unknown:
        raise QueryError(
            f"no table {', '.join(unknown)}; the tables are {', '.join(TABLE_NAMES)} (archive/compacted.py lists "
            f"their columns), each with {', '.join(SESSION_COLUMNS)} added"
        )
    return Plan(sql, frozenset(named & set(TABLE_NAMES)), ast)


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from _nodes(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _nodes(v)


def _cte_names(node: dict[str, Any]) -> list[str]:
    cte_map = node.get("cte_map")
    return [entry["key"] for entry in cte_map.get("map", [])] if isinstance(cte_map, dict) else []


@dataclass(frozen=True)
class Combine:
    """How the per-chunk answers of a query become its answer: concatenated, then the query's own top-level
    DISTINCT, ORDER BY and LIMIT applied again (the top k of a union is among the chunks' top k)."""

    distinct: bool
    order_by: list[tuple[str | int, bool]]  # (output column name or 1-based position, descending)
    limit: int | None


_RAY_SUBSET = (
    "with --ray-address a query runs once per chunk of sessions and the answers are combined, so it may "
    "aggregate only per session (GROUP BY session_id ...), and its top-level ORDER BY may name only output "
    "columns or positions; run it without --ray-address to have DuckDB answer it whole"
)


def combine_for(p: Plan, aggregates: set[str]) -> Combine:
    """The combination of per-chunk answers that gives the whole answer, or QueryError outside that subset."""
    top = p.ast
    if top.get("type") != "SELECT_NODE":
        raise QueryError(f"{top.get('type', 'this query').lower()}: {_RAY_SUBSET}")
    grouped_by_session = any(
        g.get("class") == "COLUMN_REF" and g.get("column_names", [""])[-1] == "session_id"
        for g in top.get("group_expressions", [])
    )
    for node in _nodes(top):
        if node.get("class") == "WINDOW":
            raise QueryError(f"window functions: {_RAY_SUBSET}")
        if node.get("class") == "FUNCTION" and node.get("function_name") in aggregates:
            if not grouped_by_session or any(_is_subquery(n) for n in _nodes(top) if n is not top):
                raise QueryError(f"{node['function_name']}() across sessions: {_RAY_SUBSET}")
    distinct, order_by, limit = False, [], None
    for mod in top.get("modifiers", []):
        if mod["type"] == "DISTINCT_MODIFIER":
            distinct = True
        elif mod["type"] == "ORDER_MODIFIER":
            for o in mod["orders"]:
                e = o["expression"]
                if e.get("class") == "COLUMN_REF":
                    order_by.append((e["column_names"][-1], o["type"] == "DESCENDING"))
                elif e.get("class") == "CONSTANT" and isinstance(e["value"].get("value"), int):
                    order_by.append((e["value"]["value"], o["type"] == "DESCENDING"))
                else:
                    raise QueryError(f"ORDER BY an expression: {_RAY_SUBSET}")
        elif mod["type"] == "LIMIT_MODIFIER":
            lim, off = mod.get("limit"), mod.get("offset")
            if off is not None or not (lim and lim.get("class") == "CONSTANT"):
                raise QueryError(f"OFFSET or a computed LIMIT: {_RAY_SUBSET}")
            limit = int(lim["value"]["value"])
    return Combine(distinct, order_by, limit)


def _is_subquery(node: dict[str, Any]) -> bool:
    return node.get("class") == "SUBQUERY" or node.get("type") == "SUBQUERY"


def aggregate_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'")
    return {r[0] for r in rows.fetchall()} | {"count_star"}
