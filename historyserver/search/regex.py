"""Regex mode: an RE2 pattern matched against each line (grep -E: a line is a hit when the pattern matches anywhere
in it; case-sensitive unless the pattern says `(?i)`), and what narrows the search before any regex runs.

RE2 (google-re2 here, and DuckDB's regexp_matches in the archive backend) matches in linear time, so no pattern can
stall the server. RE2's syntax is ERE's plus Perl's classes (\\d \\w \\s \\b) and flags. GNU grep's word anchors
\\< and \\> become \\b (RE2 would read them as the characters < and >, silently finding nothing); backends run
`Regex.re2`, the pattern after that. Highlights follow POSIX's leftmost-longest rule, as grep colours them.

Narrowing: `required_literals` scans the pattern conservatively (anything it does not understand contributes
nothing), so every line the pattern matches contains each literal it returns. From them, `required_index_tokens`
derives what a term index can use, and `to_sls_plan` the SLS search + SQL `regexp_like` filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from .errors import SearchRefused
from .match import merge_ranges
from .query import DELIMITERS
from .to_sls import SlsKeys, quote
from .to_sql import IndexToken

MAX_PATTERN_CHARS = 4096
MAX_HIGHLIGHTS = 200  # ranges per line: a pattern like `.` must not turn one hit into thousands of spans
_REPEAT = re.compile(r"\{\d+(,\d*)?\}")


@dataclass(frozen=True)
class Regex:
    pattern: str  # as the user gave it
    re2: str  # what RE2 runs (DuckDB's regexp_matches, SLS): GNU's word anchors turned into \b
    compiled: Any  # re2._Regexp (the package publishes no type for it)

    def search(self, line: str) -> bool:
        return self.compiled.search(line) is not None

    def highlight(self, line: str) -> list[tuple[int, int]]:
        """Character ranges [start, end) of the non-empty matches, leftmost-longest, as grep --color shows them."""
        ranges = []
        for m in self.compiled.finditer(line):
            if m.end() > m.start():
                ranges.append(m.span())
                if len(ranges) >= MAX_HIGHLIGHTS:
                    break
        return merge_ranges(ranges)


def compile_regex(pattern: str) -> Regex:
    """The pattern compiled by RE2; SearchRefused carrying RE2's own message when it does not compile."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SearchRefused(f"the regular expression is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}")
    if not pattern:
        raise SearchRefused("the regular expression is empty: give a pattern, or search in terms mode")
    options = re2.Options()
    options.longest_match = True
    options.log_errors = False  # RE2 would print every refused pattern on the server's stderr
    translated = _word_anchors(pattern)
    try:
        compiled = re2.compile(translated, options)
    except re2.error as e:
        message = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise SearchRefused(f"invalid regular expression (RE2): {message}") from None
    return Regex(pattern, translated, compiled)


def _word_anchors(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "[":
            end = _skip_class(pattern, i)
            end = n if end < 0 else end
            out.append(pattern[i:end])
            i = end
        elif c == "\\" and i + 1 < n:
            out.append("\\b" if pattern[i + 1] in "<>" else pattern[i : i + 2])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def required_literals(pattern: str) -> list[str]:
    """Lower-case substrings every matching line contains (lower-cased, so that they also hold under `(?i)`)."""
    runs: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            runs.append("".join(run).lower())
            run.clear()

    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "|":
            return []  # an alternative at the top: no single literal is required
        if c in "([":
            flush()
            i = _skip_group(pattern, i) if c == "(" else _skip_class(pattern, i)
            if i < 0:
                return []
            i = _skip_quantifier(pattern, i)
            continue
        if c in ".^$":
            flush()
            i = _skip_quantifier(pattern, i + 1)
            continue
        if c == "\\":
            if i + 1 >= n:
                return []
            e = pattern[i + 1]
            if (
                e.isascii() and not e.isalnum() and e not in "<>"
            ):  # escaped punctuation is itself (\< and \> are anchors)
                lit, i = e, i + 2
            elif e == "Q":  # \Q...\E is literal text; it ends the run, as a quantifier may follow \E
                end = pattern.find("\\E", i + 2)
                text = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                after = n if end < 0 else end + 2
                if _quantifier_at(pattern, after):  # it applies to the last character only
                    text = text[:-1]
                run.extend(text)
                flush()
                i = _skip_quantifier(pattern, after)
                continue
            else:  # a class (\d), an assertion (\b), a code (\x41, \x{..}, \p{..}, \0): not a known literal
                flush()
                i = _skip_quantifier(pattern, _skip_escape(pattern, i))
                continue
        else:
            lit, i = c, i + 1
        # A quantifier after the literal: `?`, `*`, {0,..} make it optional; `+`, {1,..} keep it but end the run.
        q = _quantifier_at(pattern, i)
        if q is None:
            run.append(lit)
            continue
        minimum, end = q
        if minimum >= 1:
            run.append(lit)
        flush()
        i = end
    flush()
    return [r for r in runs if r]


def _quantifier_at(pattern: str, i: int) -> tuple[int, int] | None:
    """(minimum count, index after) of a quantifier starting at i, with its lazy `?`, or None."""
    if i >= len(pattern):
        return None
    c = pattern[i]
    if c in "*?+":
        minimum, end = (1 if c == "+" else 0), i + 1
    elif c == "{" and (m := _REPEAT.match(pattern, i)):
        minimum, end = int(m.group().strip("{}").split(",")[0]), m.end()
    else:
        return None
    return minimum, end + 1 if end < len(pattern) and pattern[end] == "?" else end


def _skip_quantifier(pattern: str, i: int) -> int:
    q = _quantifier_at(pattern, i)
    return q[1] if q else i


def _skip_escape(pattern: str, i: int) -> int:
    e = pattern[i + 1]
    j = i + 2
    if e in "xpP" and j < len(pattern) and pattern[j] == "{":
        k = pattern.find("}", j)
        return len(pattern) if k < 0 else k + 1
    if e == "x":
        return j + 2
    if e.isdigit():
        while j < len(pattern) and pattern[j].isdigit():
            j += 1
    if e in "pP":
        return j + 1
    return j


def _skip_class(pattern: str, i: int) -> int:
    """Index after the bracket expression at i (`[]a]`, `[^]a]`, `[[:alpha:]]`, escapes); -1 if unterminated."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            j += 2
        elif c == "[" and pattern.startswith("[:", j):
            k = pattern.find(":]", j + 2)
            j = len(pattern) if k < 0 else k + 2
        elif c == "]":
            return j + 1
        else:
            j += 1
    return -1


def _skip_group(pattern: str, i: int) -> int:
    depth, j = 0, i
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _skip_class(pattern, j)
            if j < 0:
                return -1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def literal_index_tokens(literal: str) -> frozenset[IndexToken]:
    """What a term index can use of one required literal: its tokens that are whole (delimiters on both sides,
    inside the literal) exactly, and its last one as a prefix when a delimiter precedes it. The first piece may be
    the end of a longer token, so it is never used."""
    words = re.split("[" + re.escape(DELIMITERS) + "]+", literal.lower())
    last = len(words) - 1
    return frozenset((w, k == last) for k, w in enumerate(words) if k > 0 and w)


def required_index_tokens(pattern: str) -> frozenset[IndexToken]:
    """Tokens (exact, or prefix) every line the pattern matches contains: the term index narrows by all of them."""
    return frozenset(t for lit in required_literals(pattern) for t in literal_index_tokens(lit))


@dataclass(frozen=True)
class SlsRegexPlan:
    """Regex mode on SLS: `search` narrows by the pattern's literal tokens (plus the terms query, if any), and
    `where` filters the narrowed rows with SLS SQL (`search | SELECT * WHERE <where>`)."""

    search: str
    where: str
    warnings: list[str] = field(default_factory=list)


# RE2 syntax that SLS SQL's regexp_like (a Java-style engine) reads differently or not at all.
_NOT_ON_SLS = {
    "(?P<": "named groups (?P<name>...): use a plain group",
    "[[:": "POSIX classes such as [[:alpha:]]: use [a-zA-Z], \\d, \\s or \\w",
    "\\C": "\\C (any byte)",
    "(?U": "the ungreedy flag (?U)",
    "\\Q": "\\Q...\\E quoting: escape the characters instead",
    "\\z": "\\z: use $",
}


def to_sls_plan(regex: Regex, narrow: str, keys: SlsKeys | None = None) -> SlsRegexPlan:
    """The SLS form of regex mode; `narrow` is the SLS search of the terms query (`*` for none). Refuses, naming
    the construct, what SLS SQL cannot run the same way."""
    keys = keys or SlsKeys.default()
    for construct, why in _NOT_ON_SLS.items():
        if construct in regex.pattern:
            raise SearchRefused(f"SLS cannot run this regular expression: {why}; or search the archive")
    message_key = keys.fields["message"]
    parts = [] if narrow.strip() == "*" else [f"({narrow})"]
    for token, prefix in sorted(required_index_tokens(regex.re2)):
        parts.append(f"{message_key}: {token}*" if prefix else f"{message_key}: {quote(token)}")
    warnings = []
    if not parts:
        warnings.append(
            "the regular expression has no literal word to narrow by: SLS filters every line of the time range "
            "with SQL, which is slow and may stop early; add a word the lines contain"
        )
    column = '"' + message_key.replace('"', '""') + '"'
    where = f"regexp_like({column}, '{regex.re2.replace(chr(39), chr(39) * 2)}')"
    return SlsRegexPlan(" and ".join(parts) or "*", where, warnings)
