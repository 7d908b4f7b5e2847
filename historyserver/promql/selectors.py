"""Series selectors: `match[]` parameters of the metadata APIs, and the matchers of a parsed VectorSelector."""

from __future__ import annotations

import promql_parser

from .errors import BadData
from .model import Matcher
from .parser import parse

_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def selector_matchers(vs: promql_parser.VectorSelector) -> list[Matcher]:
    """The matchers of a VectorSelector, the metric name as a `__name__` equality matcher first."""
    out = [Matcher("__name__", "=", vs.name)] if vs.name else []
    for m in vs.matchers.matchers:
        out.append(Matcher(m.name, _OPS[str(m.op)], m.value))
    return out


def parse_series_selector(text: str) -> list[Matcher]:
    """Parse `foo{a="b"}` or `{__name__=~"x.*"}` into matchers, as Prometheus's parser.ParseMetricSelector."""
    expr = parse(text)
    if not isinstance(expr, promql_parser.VectorSelector) or expr.offset is not None or expr.at is not None:
        raise BadData(f"invalid series selector {text!r}: expected a vector selector")
    return selector_matchers(expr)
