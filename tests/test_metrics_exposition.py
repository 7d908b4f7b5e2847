"""The collector's fast reader of plain scrapes (collector/sources/exposition.py) gives the families
prometheus_client's reader gives, and hands anything else to it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.sources import exposition
from tests import metrics_scrapes


def _shape(families) -> list[tuple]:
    return [
        (
            f.name,
            f.documentation,
            f.type,
            f.unit,
            [(s.name, s.labels, repr(s.value), type(s.value), s.timestamp, s.exemplar) for s in f.samples],
        )
        for f in families
    ]


def _reference() -> str:
    lines = metrics_scrapes.REFERENCE.read_text().splitlines()
    return "\n".join(line.split("] ", 1)[1] if line.startswith("[") else line for line in lines) + "\n"


PLAIN = [
    '# HELP a_total help  with   spaces\n# TYPE a_total counter\na_total{x="1",y="a,b=c"} 3 1700000000123\n',
    '# TYPE c counter\nc{x="1"} 1.5\nc_created{x="1"} 17e8\n',  # a counter named without _total
    '# HELP h h\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 0.7\nh_other 1\n',
    '# TYPE s summary\ns{quantile="0.9"} NaN\ns_count 3\ns_sum 1e3\n',
    '# HELP g doc\r\n# TYPE g gauge\r\n\r\ng -Inf\n# a comment\ng 2 5\nloose{a=""} 1\n',
    "# HELP u only help\nu_total 1\nu 2\n",  # untyped: suffixed samples are families of their own
    '# TYPE g gauge\n# HELP g later help\ng{a="b",} 16\n',
    "",
]
ODD = [
    'e{a="back\\\\slash"} 1\n',  # escapes
    "# HELP e a \\n newline\ne 1\n",
    'e{__name__="x"} 1\n',
    'e{a="1",a="2"} 1\n',
    "e\t1\n",
    "e  1\n",
    "e{} 1\n",
    'e{a="1"} 1 # {t="x"} 1\n',
    '# HELP "e" quoted\ne 1\n',
    "e 1_000\n",
]


@pytest.mark.parametrize("text", [*PLAIN, "reference"])
def test_plain_scrapes_read_as_prometheus_client_reads_them(text):
    text = _reference() if text == "reference" else text
    got = exposition.parse(text)
    assert got is not None
    assert _shape(got) == _shape(text_string_to_metric_families(text))


@pytest.mark.parametrize("text", ODD)
def test_other_scrapes_are_left_to_prometheus_client(text):
    assert exposition.parse(text) is None


def test_the_collector_reads_a_plain_scrape_and_an_odd_one_alike():
    from collector.sources.metrics import to_openmetrics

    target = {"instance": "h:1", "job": "ray"}
    plain = _reference()
    odd = plain + 'odd_one{a="back\\\\slash"} 1\n'
    fams, n = to_openmetrics(plain, target, 1000)
    odd_fams, odd_n = to_openmetrics(odd, target, 1000)
    assert n > 0 and odd_n == n + 1 and _shape(odd_fams)[: len(fams)] == _shape(fams)
