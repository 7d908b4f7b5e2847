"""The metrics compaction's column-wise reader of the text format (historyserver/compaction/openmetrics.py)
against prometheus_client's parser: tricky, real, mutated and exemplar-bearing text read alike, value tokens read
like Python's float, and its speed."""

from __future__ import annotations

import random
import re
import struct
import time

import pytest

from archive.metrics_blocks import render
from archive.metrics_blocks import scrape_header as _scrape_families
from collector.sources.metrics import to_openmetrics
from historyserver.compaction.export_events import Damage
from tests import needs
from tests.metrics_scrapes import REFERENCE, SESSION, STEP, T0, up


def reference_rows(text: str):
    """What the compaction read before the column-wise reader: prometheus_client's lax text parser, block by block
    (split at `# HELP up `), all or nothing per block, `_created` samples of typed parents dropped."""
    from prometheus_client.parser import text_string_to_metric_families

    rows, damaged = [], []
    starts = [0] + [m.start() + 1 for m in re.finditer(r"\n# HELP up ", text)]
    for n, (a, b) in enumerate(zip(starts, starts[1:] + [len(text)]), 1):
        block, got = text[a:b], []
        try:
            if not block.startswith("# HELP up "):
                raise ValueError("no up")
            created = {
                f"{p[2]}_created"
                for p in (line.split(" ", 3) for line in block.splitlines() if line.startswith("# TYPE "))
                if len(p) == 4 and p[3] in ("counter", "histogram", "summary", "gaugehistogram")
            }
            for family in text_string_to_metric_families(block):
                for s in family.samples:
                    if s.name in created:
                        continue
                    if s.timestamp is None:
                        raise ValueError("no timestamp")
                    got.append(
                        (
                            s.name,
                            tuple(sorted(s.labels.items())),
                            round(s.timestamp * 1e6),
                            struct.pack("<d", float(s.value)),
                        )
                    )
        except (ValueError, TypeError, KeyError, IndexError):
            damaged.append(n)
            continue
        rows += got
    return rows, damaged


class _AllDamage(Damage):
    def __init__(self):
        super().__init__()
        self.all = []

    def note(self, where, error, count=1):
        super().note(where, error, count)
        self.all.append(f"{where}: {error}")


class _Sink:
    def __init__(self):
        self.cols = []

    def add(self, ids, ts, values, seq):
        self.cols.append((ids, ts, values, seq))


def fast_rows(text: str):
    """The same text through the compaction's reader (column-wise, reference parser for what it leaves over)."""
    from historyserver.compaction.metrics import _read_file
    from historyserver.compaction.openmetrics import SeriesTable

    table, sink, damage = SeriesTable(), _Sink(), _AllDamage()
    _read_file(text.encode(), "f", table, sink, damage, 0)
    rows, seqs = [], []
    for ids, ts, values, seq in sink.cols:
        for i, t, v, q in zip(ids.tolist(), ts.tolist(), values.tolist(), seq.tolist()):
            name, labels = table.keys[i]
            rows.append((name, labels, t, struct.pack("<d", v)))
            seqs.append(q)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # arrival order kept for "first read wins"
    damaged = [int(e.split(" block ")[1].split(":")[0]) for e in damage.all]
    return rows, damaged, damage


def ray_scrapes(n: int = 6) -> str:
    """Real Ray 2.60 expositions (all three endpoints of the reference) as the collector spools them."""
    body = {}
    for line in needs.reference("metrics", REFERENCE.name).read_text().splitlines(keepends=True):
        if line.startswith("[:"):
            port, _, rest = line.partition("] ")
            body.setdefault(port[2:], []).append(rest)
    out = []
    for i in range(n):
        for port, lines in body.items():
            labels = {"job": "ray", "ray_io_cluster": "demo", "instance": f"10.0.0.1:{port}"}
            families, count = to_openmetrics("".join(lines), labels, T0 + i * STEP + int(port) % 997)
            out.append(render(_scrape_families(labels, T0 + i * STEP, 1, 0.01 * i, count) + families).decode())
    return "".join(out)


TRICKY = {
    "escapes": up() + "# HELP m m\n# TYPE m gauge\n"
    'm{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="other\\tkept",e="\\\\n"} 1.5 1764100000.000\n'
    'm{a="sp ace",b="br}a{ce",c="com,ma=eq",d="# {x=\\"y\\"} 1 2"} 2 1764100000.001\n'
    'm{a="ünï €"} 3 1764100000.002\n',
    "specials": up() + '# HELP g g\n# TYPE g gauge\ng{k="a"} NaN 1764100000.000\ng{k="b"} +Inf 1764100000.000\n'
    'g{k="c"} -Inf 1764100000.000\ng{k="d"} -0.0 1764100000.000\ng{k="e"} 1.7e+09 1764100000.000\n'
    'g{k="f"} 12345678901234567890 1764100000.000\ng{k="g"} 15.400000000000004 1764100000.000\n'
    'g{k="h"} 0.1e-3 1764100000.000\ng{k="i"} nan 1764100000.000\ng{k="j"} 1e400 1764100000.000\n',
    "timestamps": up() + '# HELP t t\n# TYPE t gauge\nt{k="a"} 1 1764100000\nt{k="b"} 1 1764100000.5\n'
    't{k="c"} 1 1764100000.123456\nt{k="d"} 1 1.764100000123e9\nt{k="e"} 1 99\n',
    "created_and_counters": up() + '# HELP c c\n# TYPE c counter\nc_total{k="a"} 3.0 1764100000.000\n'
    'c_created{k="a"} 1.7e9 1764100000.000\n# HELP h h\n# TYPE h histogram\n'
    'h_bucket{le="+Inf"} 1 1764100000.000\nh_count 1 1764100000.000\n'
    "h_created 1.7e9 1764100000.000\n# HELP x_created x\n# TYPE x_created gauge\n"
    "x_created 5 1764100000.000\n",
    "bare_counter_renamed": up() + '# HELP c c\n# TYPE c counter\nc{k="a"} 3.0 1764100000.000\n',
    "malformed_line": up()
    + '# HELP m m\n# TYPE m gauge\nm{k="a"} 1 1764100000.000\nm{k="b" 2 1764100000.000\n'
    + up("1764100015.000")
    + 'm{k="a"} 5 1764100015.000\n',
    "missing_up": '# HELP m m\n# TYPE m gauge\nm{k="a"} 1 1764100000.000\n' + up("1764100015.000"),
    "no_timestamp": up() + 'm{k="a"} 1\n' + up("1764100015.000"),
    "odd_but_valid": up() + "\n# a free comment\n# HELP m m\n# TYPE m gauge\nm 1 1764100000.000\nm{} 2 1764100000.001\n"
    'm{a="b",} 3 1764100000.002\nm{ a = "b" } 4 1764100000.003\nm{a="1"}  5  1764100000.004\n'
    'm{a="1"} 6 1764100000.005 \n   m{a="2"} 7 1764100000.006\n',
    "refused_by_reference": up()
    + 'm{a="1",a="2"} 1 1764100000.000\n'
    + up("1764100015.000")
    + 'm{__name__="x"} 1 1764100015.000\n'
    + up("1764100030.000")
    + 'm{__x="1"} 1 1764100030.000\n'
    + up("1764100045.000")
    + "# TYPE m\n"
    + up("1764100060.000")
    + 'm{a="1"} 1_0 1764100060.000\n'
    + up("1764100075.000")
    + 'm{a="1"} 0x10 1764100075.000\n',
    "control_chars": up() + 'm{a="x\ty"} 1 1764100000.000\nm{a="1"}\t2\t1764100000.000\n'
    'm{a="r\r"} 3 1764100000.000\n' + up("1764100015.000") + 'm{a="\u2028"} 4 1764100015.000\n',
    "type_unknown_info": up() + '# HELP s s\n# TYPE s summary\ns{quantile="0.5"} 1 1764100000.000\n'
    "s_sum 2 1764100000.000\ns_count 3 1764100000.000\ns_created 4 1764100000.000\n"
    "# HELP u u\n# TYPE u unknown\nu 1 1764100000.000\n# HELP i i\n# TYPE i info\n"
    'i_info{v="1"} 1 1764100000.000\n',
}


FAST = {"escapes", "specials", "timestamps", "created_and_counters", "type_unknown_info"}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_reader_matches_prometheus_client_on_tricky_text(case):
    text = TRICKY[case]
    want, want_damaged = reference_rows(text)
    got, got_damaged, _ = fast_rows(text)
    assert got == want
    assert got_damaged == want_damaged
    if case in FAST:  # read column-wise, not handed back to the reference parser
        from historyserver.compaction.openmetrics import SeriesTable, parse_file

        assert len(parse_file(text.encode(), SeriesTable()).slow_blocks) == 0


def test_reader_matches_prometheus_client_on_real_ray_scrapes_without_falling_back():
    from historyserver.compaction.openmetrics import SeriesTable, parse_file

    text = ray_scrapes()
    want, damaged = reference_rows(text)
    assert not damaged and len(want) > 100
    got, got_damaged, _ = fast_rows(text)
    assert got == want and not got_damaged
    parsed = parse_file(text.encode(), SeriesTable())
    assert len(parsed.slow_blocks) == 0 and len(parsed.ts_ms) == len(want)  # all of it on the fast path


def test_escapes_are_read_as_the_text_format_defines_them():
    from historyserver.compaction.openmetrics import parse_labels, parse_series_text

    assert parse_labels(r'b="x\"y",a="back\\slash\nnl\t"') == (("a", "back\\slash\nnl\\t"), ("b", 'x"y'))
    assert parse_labels(r'a="\\n"') == (("a", "\\n"),)  # an escaped backslash, then a plain n
    assert parse_series_text(b'm{a="},{"}') == ("m", (("a", "},{"),))
    for refused in ('a="1",', "a=1", 'a="1" ', 'a="1",a="2"', '__name__="x"', 'a="1"b="2"', 'a="\\"'):
        assert parse_labels(refused) is None, refused


def test_exemplars_are_ignored_and_the_sample_keeps_its_own_timestamp():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as strict

    block = (
        up() + "# HELP h h\n# TYPE h histogram\n"
        'h_bucket{le="1.0"} 3 1764100000.000 # {trace_id="a b}"} 0.5 1764100007.000\n'
        'h_bucket{le="+Inf"} 4 1764100000.000 # {trace_id="c"} 2.5\n'
        "h_count 4 1764100000.000\nh_sum 6 1764100000.000\n"
    )
    got, damaged, _ = fast_rows(block)
    want = [
        (
            s.name,
            tuple(sorted(s.labels.items())),
            s.timestamp.sec * 1000 + s.timestamp.nsec // 10**6,
            struct.pack("<d", s.value),
        )
        for f in strict(block + "# EOF\n")
        for s in f.samples
    ]
    assert not damaged and got == want
    assert {r[2] for r in got} == {1_764_100_000_000}


def test_value_tokens_read_like_python_float():
    import pyarrow as pa

    from historyserver.compaction.openmetrics import SeriesTable, _values, py_number

    rng = random.Random(5)
    tokens = ["".join(rng.choice("0123456789.eE+-") for _ in range(rng.randint(1, 7))) for _ in range(20000)]
    tokens += [
        "NaN",
        "nan",
        "+Inf",
        "-Inf",
        "Inf",
        "infinity",
        "1_0",
        "",
        "1e308",
        "1e309",
        "-1e-400",
        "9" * 400,
        "0.1",
        "17976931348623157e292",
        "4.9406564584124654e-324",
        "2.4703282292062328e-324",
    ]
    tokens += [repr(rng.uniform(-1e6, 1e6)) for _ in range(2000)] + [
        repr(rng.random() * 10 ** rng.randint(-300, 300)) for _ in range(2000)
    ]
    values, ok = _values(pa.array([t.encode() for t in tokens], pa.binary()), SeriesTable())
    for t, v, k in zip(tokens, values.tolist(), ok.tolist()):
        want = py_number(t)
        assert k == (want is not None), t
        if k:
            assert struct.pack("<d", v) == struct.pack("<d", want), t


def test_reader_speed(capsys):
    """Measured, printed, and only loosely asserted (shared CI machines): the column-wise reader against the
    reference parser on the same Ray-shaped scrapes."""
    from historyserver.compaction.openmetrics import SeriesTable, parse_file

    labels = (
        'Component="core_worker",NodeAddress="10.0.0.1",SessionName="' + SESSION + '",Version="2.60.0",'
        'WorkerId="{w}",instance="10.0.0.1:8080",job="ray",otel_scope_name="ray._private.telemetry.'
        'open_telemetry_metric_recorder",otel_scope_schema_url="",otel_scope_version="",ray_io_cluster="demo"'
    )
    body = "".join(f'ray_m{j % 40}{{{labels.format(w=f"{j:056x}")},le="{j % 7}.0"}} {j * 1.5} ' for j in range(400))
    series = body.split(" ")[0::2]
    text = "".join(
        up(f"{1764100000 + 15 * i}.000")
        + "".join(f"{s} {i * 0.25 + k} {1764100000 + 15 * i}.000\n" for k, s in enumerate(series) if s)
        for i in range(200)
    )
    data = text.encode()
    table = SeriesTable()
    parse_file(data, table)  # series texts parsed once, as for every file after a node's first
    t = time.process_time()
    parsed = parse_file(data, table)
    fast = len(parsed.ts_ms) / (time.process_time() - t)
    sample = text[: len(text) // 20]
    t = time.process_time()
    n = len(reference_rows(sample)[0])
    slow = n / (time.process_time() - t)
    with capsys.disabled():
        print(f"\nmetrics reader: {fast:,.0f} samples/s column-wise, {slow:,.0f} samples/s prometheus_client")
    assert len(parsed.slow_blocks) == 0 and fast > 5 * slow


def test_reader_matches_prometheus_client_on_mutated_text():
    """Random small damage to real and tricky text (quotes, braces, spaces, tabs, type names, ...): whatever the
    fast path accepts it reads as the reference does, and it hands the rest back whole."""
    base = ray_scrapes(1) + "".join(TRICKY.values())
    rng = random.Random(11)
    pieces = list(' "\\{},=#\t\rx_e.\n0+-') + [
        "\u00a0",
        "\u2028",
        "\\n",
        '\\"',
        " # ",
        "HELP",
        "TYPE",
        "_total",
        "_created",
        "NaN",
        "Inf",
        "guage",
        "__",
    ]
    for _ in range(60):
        text = list(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            if rng.random() < 0.5:
                text[i] = rng.choice(pieces)
            else:
                text.insert(i, rng.choice(pieces))
        text = "".join(text)
        text = text[: text.rfind("\n") + 1]
        want, want_damaged = reference_rows(text)
        got, got_damaged, _ = fast_rows(text)
        assert (got, got_damaged) == (want, want_damaged)
