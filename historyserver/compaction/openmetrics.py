"""A column-wise reader of the collector's metric spool text (archive/FORMAT.md, the `metrics` source).

prometheus_client's parser costs ~70 us a sample; a day of a 50-node cluster is tens of millions of samples. This
reader works on a whole file's bytes at once with numpy and pyarrow kernels: it finds the lines, cuts each sample
line into its series text (`name{labels}`), value and timestamp, and parses a series text into a name and sorted
labels only once per distinct text (a node has a few thousand series and scrapes them every 15 s).

It is a fast path, not a second dialect. It accepts only what it can read exactly as prometheus_client's lax text
parser reads it (the reference the compaction kept before, and still uses): canonical sample lines
`name{k="v",...} value timestamp`, `# HELP`/`# TYPE` lines with plain names, other comments. A block holding
anything else (a malformed line, a tab, a `\\r`, an exemplar, a counter sample written without `_total`, ...) is
reported back whole, and the caller reads that block with the reference parser. So each block gets exactly the
samples, or exactly the error, that the reference gives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive.metrics_blocks import BLOCK_START_BYTES

# `<name>_created` samples are the creation time of their parent, not a series of their own (see metrics.py).
CREATED_PARENTS = frozenset({"counter", "histogram", "summary", "gaugehistogram"})

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
# One label of the text format: unquoted legacy name, `="`, value with backslash escapes, `"`.
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', re.S)
_ESCAPE = re.compile(r'\\[\\n"]')  # the only escapes the format defines; any other backslash stays as written
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
_HELP = re.compile(rb"# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: .*)?\Z", re.S)
_TYPE = re.compile(rb"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ([a-z]+)\Z")
_FAMILY_TYPES = frozenset(
    {"counter", "gauge", "summary", "histogram", "gaugehistogram", "unknown", "info", "stateset", "untyped"}
)  # what prometheus_client's Metric accepts
_MAX_TOKEN = 64  # a value longer than this is left to the reference parser
_VALUE_WINDOW = 32  # bytes searched at once for the space before a value (`-1.7976931348623157e+308` is 24)

_NUMERIC = np.zeros(256, np.bool_)  # bytes of a plain decimal number; Arrow's cast reads those as float() does
_NUMERIC[np.frombuffer(b"0123456789.eE+-", np.uint8)] = True
_TS_WEIGHTS = np.array([10 ** (12 - i) for i in range(10)] + [0, 100, 10, 1], np.float64)  # `SSSSSSSSSS.mmm` -> ms
_TS_DOT = np.zeros(14, np.bool_)
_TS_DOT[10] = True  # the `.` among the timestamp's digits
Key = tuple[str, tuple[tuple[str, str], ...]]  # series identity: sample name, sorted labels


def parse_labels(text: str) -> tuple[tuple[str, str], ...] | None:
    """The sorted labels of a canonical label text (`k="v",...`, no spaces), or None when the text is anything
    else (then the reference parser decides). Escapes are read as the text format defines them."""
    if not text:
        return ()
    labels: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        m = _LABEL.match(text, pos)
        if m is None:
            return None
        name, value = m.group(1), m.group(2)
        if name.startswith("__") or name in labels:  # reserved (`__name__` too) or repeated: the reference refuses
            return None
        labels[name] = _ESCAPE.sub(lambda e: _UNESCAPE[e.group(0)], value) if "\\" in value else value
        pos = m.end()
        if pos == end:
            return tuple(sorted(labels.items()))
        if text[pos] != "," or pos + 1 == end:
            return None
        pos += 1


def parse_series_text(raw: bytes) -> Key | None:
    """`name{labels}` or `name` as a series identity, or None if it is not canonical."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    brace = text.find("{")
    if brace < 0:
        return (text, ()) if _METRIC_NAME.match(text) else None
    name = text[:brace]
    if not text.endswith("}") or not _METRIC_NAME.match(name):
        return None
    labels = parse_labels(text[brace + 1 : -1])
    return None if labels is None else (name, labels)


def _py_value(token: str) -> int | float | None:
    """prometheus_client's reading of a number token: int first, then float; no `_`, no surrounding space."""
    if not token or token != token.strip() or "_" in token:
        return None
    try:
        return int(token)
    except ValueError:
        try:
            return float(token)
        except ValueError:
            return None


def py_timestamp_ms(token: str) -> int | None:
    """The reference's milliseconds for a timestamp token: it takes the seconds for ms and divides by 1000, and
    the compaction multiplied by 1e6 and rounded (kept operation for operation, so results match bit for bit)."""
    v = _py_value(token)
    try:
        return None if v is None else round(v / 1000 * 1e6)
    except (ValueError, OverflowError):
        return None


def py_number(token: str) -> float | None:
    """A value token as prometheus_client reads it (int first, then float; no `_`, no spaces), or None."""
    v = _py_value(token)
    try:
        return None if v is None else float(v)
    except OverflowError:  # an integer beyond a double
        return None


@dataclass
class SeriesTable:
    """Series identities numbered in order of first appearance (temporary ids), and per distinct raw series text
    its id, so a text is parsed once however many samples carry it. -1 marks a text the fast path refuses."""

    ids: dict[Key, int] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    raw: dict[bytes, int] = field(default_factory=dict)
    comments: dict[bytes, tuple[int, str, str]] = field(default_factory=dict)
    numbers: dict[str, float | None] = field(default_factory=dict)

    def id_for(self, key: Key) -> int:
        sid = self.ids.get(key)
        if sid is None:
            sid = self.ids[key] = len(self.keys)
            self.keys.append(key)
        return sid

    def raw_id(self, raw: bytes) -> int:
        sid = self.raw.get(raw)
        if sid is None:
            key = parse_series_text(raw)
            sid = -1 if key is None else self.id_for(key)
            if sid >= 0 or len(self.raw) < 100_000:  # damaged text is mostly unique: do not hoard it
                self.raw[raw] = sid
        return sid

    def number(self, token: str) -> float | None:
        if token in self.numbers:
            return self.numbers[token]
        v = py_number(token)
        if len(self.numbers) < 100_000:  # NaN, +Inf, ...: a handful of distinct tokens, unless the text is garbage
            self.numbers[token] = v
        return v


# Comment kinds
_IGNORED, _HELP_LINE, _TYPE_LINE, _BAD = 0, 1, 2, 3


def _comment(table: SeriesTable, line: bytes) -> tuple[int, str, str]:
    got = table.comments.get(line)
    if got is None:
        if b"HELP" not in line and b"TYPE" not in line:
            got = (_IGNORED, "", "")  # the reference skips comments whose second word is neither
        elif m := _HELP.match(line):
            got = (_HELP_LINE, m.group(1).decode(), "")
        elif (
            (m := _TYPE.match(line)) and m.group(2).decode() in _FAMILY_TYPES and m.group(1) != b"_total"
        ):  # the reference refuses other types, and a counter named `_total`
            got = (_TYPE_LINE, m.group(1).decode(), m.group(2).decode())
        else:
            got = (_BAD, "", "")
        if len(table.comments) < 100_000:
            table.comments[line] = got
    return got


@dataclass
class Parsed:
    """One file's text: its blocks (line index and byte offset of each start), the blocks the fast path left to
    the reference parser, and the samples of all other blocks in line order (`_created` samples dropped)."""

    lines: int
    block_lines: np.ndarray
    block_bytes: np.ndarray
    slow_blocks: np.ndarray
    series_ids: np.ndarray
    ts_ms: np.ndarray
    values: np.ndarray
    line_no: np.ndarray


def _strings(buf: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The byte ranges [starts, ends) (increasing, disjoint) of one buffer as a contiguous Arrow array."""
    n = len(starts)
    if n == 0:
        return pa.array([], pa.binary())
    typ = pa.binary() if buf.size < 2**31 - 1 else pa.large_binary()
    offs = np.empty(2 * n, np.int32 if typ == pa.binary() else np.int64)
    offs[0::2] = starts
    offs[1::2] = ends
    interleaved = pa.Array.from_buffers(typ, 2 * n - 1, [None, pa.py_buffer(offs), buf])  # ranges and the gaps
    return pc.take(interleaved, pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))


def _control_bytes(arr: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Positions of the bytes below 0x20 (line ends, and the tabs or `\\r` the fast path refuses), found a
    cache-sized chunk at a time: a whole-file temporary costs more in page faults than the comparison itself."""
    mask = np.empty(min(chunk, len(arr)), np.bool_)
    found = []
    for at in range(0, len(arr), chunk):
        part = arr[at : at + chunk]
        np.less(part, 32, out=mask[: len(part)])
        found.append(np.flatnonzero(mask[: len(part)]) + at)
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _windows(buf: pa.Buffer, lo: np.ndarray, hi: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The `width` bytes before each `hi`, as the rows of a matrix, and which rows have them within [lo, hi)."""
    full = hi - lo >= width
    rows = np.flatnonzero(full)
    got = _strings(buf, hi[rows] - width, hi[rows])
    block = (
        np.frombuffer(got.buffers()[2], np.uint8, len(rows) * width).reshape(-1, width)
        if len(rows)
        else np.zeros((0, width), np.uint8)
    )
    if len(rows) == len(hi):
        return block, full
    out = np.zeros((len(hi), width), np.uint8)
    out[rows] = block
    return out, full


def _last_space(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Position of the last space in each (lo, hi) looking back from hi - first, at most _MAX_TOKEN + 1 bytes
    back; -1 where there is none."""
    out = np.full(len(hi), -1, np.int64)
    todo = np.arange(len(hi))
    for k in range(1, _MAX_TOKEN + 2):
        if not len(todo):
            break
        pos = hi[todo] - k
        inside = pos > lo[todo]
        hit = inside & (k >= first[todo]) & (arr[np.maximum(pos, 0)] == 32)
        out[todo[hit]] = pos[hit]
        todo = todo[inside & ~hit]
    return out


def _values(tokens: pa.Array, table: SeriesTable) -> tuple[np.ndarray, np.ndarray]:
    """Value tokens as floats (and which ones could be read): plain decimals with Arrow's cast (correctly rounded,
    like Python's float()), the rest (NaN, +Inf, ...) one distinct token at a time as the reference reads them."""
    n = len(tokens)
    width = 8 if tokens.type == pa.large_binary() else 4
    offs = np.frombuffer(tokens.buffers()[1], np.int32 if width == 4 else np.int64, n + 1, tokens.offset * width)
    data = np.frombuffer(tokens.buffers()[2], np.uint8, offs[-1]) if offs[-1] else np.zeros(0, np.uint8)
    plain = np.ones(n, np.bool_)
    odd = np.flatnonzero(~_NUMERIC[data])
    if len(odd):
        plain[np.unique(np.searchsorted(offs, odd, "right") - 1)] = False
    plain &= np.diff(offs) > 0
    values = np.zeros(n, np.float64)
    ok = np.ones(n, np.bool_)
    try:
        picked = tokens if plain.all() else pc.filter(tokens, pa.array(plain))
        cast = pc.cast(picked.cast(pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
        values[plain] = cast
        # An integer too large for a double is an error to the reference (OverflowError): let it decide.
        plain[np.flatnonzero(plain)[~np.isfinite(cast)]] = False
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        plain[:] = False
    odd_idx = np.flatnonzero(~plain)
    if len(odd_idx):
        for i, raw in zip(odd_idx.tolist(), pc.take(tokens, pa.array(odd_idx)).to_pylist()):
            v = table.number(raw.decode("utf-8", "replace"))
            if v is None:
                ok[i] = False
            else:
                values[i] = v
    return values, ok


def parse_file(data: bytes, table: SeriesTable) -> Parsed:
    """Read one file's text (complete lines, UTF-8) column-wise; see the module doc for what it leaves over."""
    arr = np.frombuffer(data, np.uint8)
    ctl = _control_bytes(arr)
    is_nl = arr[ctl] == 10
    ends = ctl[is_nl]
    n_lines = len(ends)
    starts = np.empty(n_lines, np.int64)
    if n_lines:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    bad_lines = [np.searchsorted(ends, ctl[~is_nl])]  # tabs, `\r`, ...: other readers split or strip at them
    if not data.isascii():  # U+0085, U+2028, U+2029 end lines for str.splitlines (the reference's TYPE scan)
        odd = [m.start() for m in re.finditer(rb"\xc2\x85|\xe2\x80[\xa8\xa9]", data)]
        bad_lines.append(np.searchsorted(ends, np.array(odd, np.int64)))
    first = arr[starts] if n_lines else np.zeros(0, np.uint8)
    empty = starts == ends
    comment = (first == ord("#")) & ~empty
    sample = ~comment & ~empty
    buf = pa.py_buffer(data)

    # Comments: each distinct line classified once.
    c_idx = np.flatnonzero(comment)
    c_enc = pc.dictionary_encode(_strings(buf, starts[c_idx], ends[c_idx]))
    c_kinds = [_comment(table, line) for line in c_enc.dictionary.to_pylist()]
    c_codes = c_enc.indices.to_numpy(zero_copy_only=False)
    kind_of = np.array([k for k, _, _ in c_kinds] or [0], np.int8)
    bad_lines.append(c_idx[kind_of[c_codes] == _BAD])
    is_up = np.array([line.startswith(BLOCK_START_BYTES) for line in c_enc.dictionary.to_pylist()] or [False])
    block_lines = (
        np.unique(np.concatenate([[0], c_idx[is_up[c_codes]]]).astype(np.int64)) if n_lines else np.zeros(0, np.int64)
    )
    block_of = np.searchsorted(block_lines, np.arange(n_lines), "right") - 1
    slow = np.zeros(len(block_lines), np.bool_)
    if n_lines and not data.startswith(BLOCK_START_BYTES):
        slow[0] = True  # the reference notes it as a block without its `up` family

    # Sample lines: the timestamp, then the value, are the last two space-separated tokens.
    s_idx = np.flatnonzero(sample)
    st, en = starts[s_idx], ends[s_idx]
    n = len(s_idx)
    good = np.ones(n, np.bool_)
    window, fixed = _windows(buf, st + 3, en, 15)  # ` SSSSSSSSSS.mmm`, as the collector writes timestamps
    digits = (window[:, 1:] - np.uint8(48)).astype(np.float64)
    fixed &= (window[:, 0] == 32) & (window[:, 11] == ord(".")) & np.all((digits <= 9) | _TS_DOT, axis=1)
    # Digits times powers of ten summed in doubles: every partial sum is an integer below 2**53, so exact. einsum,
    # not `@`: BLAS would wake its thread pool, whose spinning costs more CPU than this sum.
    ts_ms = np.where(fixed, np.einsum("ij,j->i", digits, _TS_WEIGHTS).astype(np.int64), 0)
    s1 = en - 15
    for i in np.flatnonzero(~fixed).tolist():  # any other timestamp: read as the reference reads it, line by line
        line = data[st[i] : en[i]]
        cut = line.rfind(b" ")
        ms = py_timestamp_ms(line[cut + 1 :].decode("utf-8", "replace")) if cut > 0 else None
        if ms is None:
            good[i] = False
        else:
            ts_ms[i] = ms
            s1[i] = st[i] + cut
    s1[~good] = en[~good]
    window, full = _windows(buf, st + 1, s1, _VALUE_WINDOW)
    spaces = window[:, ::-1] == 32
    back = np.argmax(spaces, axis=1)
    found = full & spaces[np.arange(n), back]
    s2 = np.where(found, s1 - 1 - back, -1)
    rest = np.flatnonzero(good & ~found)
    s2[rest] = _last_space(arr, st[rest], s1[rest], np.where(full[rest], _VALUE_WINDOW + 1, 1))
    good &= (s2 > st) & (s1 - s2 > 1)
    s1 = np.where(good, s1, st)  # a refused line contributes empty ranges, keeping them in order
    s2 = np.where(good, s2, st - 1)

    values, v_ok = _values(_strings(buf, s2 + 1, s1), table)
    good &= v_ok
    k_enc = pc.dictionary_encode(_strings(buf, st, np.maximum(s2, st)))
    k_ids = np.array([table.raw_id(raw) for raw in k_enc.dictionary.to_pylist()] or [-1], np.int64)
    series = k_ids[k_enc.indices.to_numpy(zero_copy_only=False)] if n else np.zeros(0, np.int64)
    good &= series >= 0
    bad_lines.append(s_idx[~good])

    # Counters: the reference renames a sample written with its counter family's bare name to `<name>_total`
    # (the collector always writes `_total`); leave any such block to it. `_created` samples are dropped in each
    # block that declares their parent's type, as the reference does.
    types = [(name, typ) for k, name, typ in c_kinds if k == _TYPE_LINE]
    bare = {name for name, typ in types if typ == "counter" and not name.endswith("_total")}
    created = {f"{name}_created" for name, typ in types if typ in CREATED_PARENTS}
    drop = np.zeros(n, np.bool_)
    if bare or created:
        suspect, creators = [], {}
        for sid in np.unique(series[series >= 0]).tolist():
            name = table.keys[sid][0]
            if name in bare:
                suspect.append(sid)
            if name in created:
                creators[sid] = name
        if suspect:
            bad_lines.append(s_idx[np.isin(series, suspect)])
        if creators:
            c_block = block_of[c_idx]
            for sid, name in creators.items():
                parent = name[: -len("_created")]
                declaring = [
                    i
                    for i, (k, nm, typ) in enumerate(c_kinds)
                    if k == _TYPE_LINE and nm == parent and typ in CREATED_PARENTS
                ]
                blocks = np.unique(c_block[np.isin(c_codes, declaring)])
                mine = series == sid
                drop[mine] = np.isin(block_of[s_idx[mine]], blocks)

    bad = np.concatenate(bad_lines).astype(np.int64)
    slow[block_of[bad[bad < n_lines]]] = True
    keep = good & ~drop & ~slow[block_of[s_idx]]
    return Parsed(
        n_lines,
        block_lines,
        starts[block_lines] if n_lines else np.zeros(0, np.int64),
        np.flatnonzero(slow),
        series[keep],
        ts_ms[keep],
        values[keep],
        s_idx[keep],
    )


__all__ = [
    "CREATED_PARENTS",
    "Key",
    "Parsed",
    "SeriesTable",
    "parse_file",
    "parse_labels",
    "parse_series_text",
    "py_number",
]
