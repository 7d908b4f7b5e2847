"""The one way into promql_parser: an expression is refused before parsing when it nests too deeply.

promql_parser (Rust) overflows its stack, killing the whole server, on a few thousand levels of nesting
(`((((up))))`, `abs(abs(...))`, `up + up + ...`), and the evaluator recurses once per level. Real queries
nest a handful of levels; so the depth is estimated from the text, cheaply and with the strings left out, and
more than MAX_NESTING is a 400 bad_data.
"""

from __future__ import annotations

import re

import promql_parser as pp

from .errors import BadData

MAX_NESTING = 200  # brackets open at once plus operators: far above real queries, far below a stack overflow
_STRINGS_AND_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`|#[^\n]*')
_NESTING = re.compile(r"[(\[{]|[)\]}]|[-+*/%^]|==|!=|<=|>=|[<>]|\b(?:and|or|unless|atan2)\b")


def nesting(text: str, limit: int = MAX_NESTING) -> int:
    """Most brackets open at once plus the number of operators (each may add a level), counted up to limit + 1."""
    code = _STRINGS_AND_COMMENTS.sub('""', text)
    depth = deepest = operators = 0
    for m in _NESTING.finditer(code):
        c = m.group()
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        else:
            operators += 1
        if deepest + operators > limit:
            break
    return deepest + operators


def parse(expr: str) -> pp.Expr:
    """promql_parser's AST of expr; BadData (Prometheus's `1:1: parse error: ...`) for anything it cannot take."""
    if nesting(expr) > MAX_NESTING:
        raise BadData(
            f"1:1: parse error: the expression nests more than {MAX_NESTING} levels deep (brackets and "
            "operators); this server evaluates no deeper: split it into several queries"
        )
    try:
        return pp.parse(expr)
    except ValueError as e:
        raise BadData(f"1:1: parse error: {e}") from None
    except BaseException as e:  # the Rust parser may panic on odd input; still the user's bad input
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadData(f"1:1: parse error: {e}") from None
