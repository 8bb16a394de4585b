"""bench/overload.py's reading of the server's histograms (issue 19): the quantile of what a
histogram observed between two scrapes, and which calls the server answered."""

from __future__ import annotations

import pytest

from bench.overload import histogram_quantile, server_calls

INF = float("inf")


def test_the_quantile_of_what_was_observed_between_two_scrapes() -> None:
    before = [(0.01, 5.0), (0.1, 5.0), (1.0, 5.0), (INF, 5.0)]  # 5 fast calls before the row
    after = [(0.01, 5.0), (0.1, 55.0), (1.0, 105.0), (INF, 105.0)]  # 50 in 10–100 ms, 50 in 0.1–1 s
    assert histogram_quantile(before, after, 0.5) == pytest.approx(100.0)  # the 50th of 100: top of bucket 2
    assert histogram_quantile(before, after, 0.25) == pytest.approx(55.0)  # halfway through 10–100 ms
    assert histogram_quantile(before, after, 0.99) == pytest.approx(982.0)  # 49/50 of the way through 0.1–1 s


def test_nothing_observed_is_zero_and_beyond_the_last_bound_is_that_bound() -> None:
    same = [(0.01, 3.0), (INF, 3.0)]
    assert histogram_quantile(same, same, 0.99) == 0.0
    assert histogram_quantile([], [], 0.5) == 0.0
    beyond = [(0.01, 0.0), (5.0, 0.0), (INF, 10.0)]
    assert histogram_quantile([], beyond, 0.99) == pytest.approx(5000.0)


def test_calls_the_client_throttled_were_never_answered_by_the_server() -> None:
    assert server_calls({"ok": 10, "shed": 5, "throttled": 100, "deadline": 1}) == 16
    assert server_calls({"ok": 0, "throttled": 7}) == 1  # never zero: it divides
    assert server_calls({"ok": 3, "shed": 1}) == 4  # rows of runs before the throttle
