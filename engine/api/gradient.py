"""A concurrency limit tied to the latency the engine shows unloaded (issue 19).

`GradientLimit` bounds the attempts a caller keeps in flight on one channel, after Netflix's
concurrency-limits (Gradient and Gradient2) and TCP Vegas: once per round (about one round
trip) it compares the round's mean latency with the *unloaded* latency — the quickest
answer seen over the last `noload_window_s` — and sets

    new = limit × gradient + allowance,     gradient = clamp(tolerance × rtt_noload / rtt_now, ½, 1)
    limit = (1 − smoothing) × limit + smoothing × new

so the limit settles where the answers take about `tolerance` times what they take
unloaded, whatever that is on this engine and machine (the fixed 100 ms target of the AIMD
`ConcurrencyLimit` held overload latency near 100 ms even where the engine answers in 20 ms
at saturation: bench/README.md, "A concurrency limit in the client"). At equilibrium
gradient = 1 − allowance / limit: the allowance is the queue the limit keeps on purpose, so
the engine never idles for want of work. An attempt refused for overload counts as the
steepest gradient (½) for its round. The limit grows only while the caller uses at least
half of it, so an idle caller does not accumulate a limit it never tested.

Why not the long-term average latency as the reference, as Gradient2 does: under a load
that stays for seconds that average follows the loaded latency, and the limit drifts up
with it. The quickest answer of a window moves only when the engine itself gets slower:
even under overload some calls pass in a few ms (the aio server's queue is not FIFO). The
price: on a channel that mixes calls of very different cost (a cheap read among large
batches) the cheap one sets the reference, and the limit is held low; hence opt-in.

Pure bookkeeping on the caller's clock: unit-tested with a fake one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# How much slower than unloaded the answers may get before the limit stops growing.
DEFAULT_TOLERANCE = 1.25


class GradientLimit:
    """A per-channel limit on attempts in flight; the same interface as `ConcurrencyLimit`.

    `critical` attempts (commits and releases: they free stock) are never refused and still
    count as in flight. An attempt of `cost` > 1 (a batch) is let through while nothing else
    is in flight, so no batch waits forever, and the limit never falls below two of the
    largest attempts seen (with `min_limit` as the floor below that). `min_limit` = 16: the
    latency a caller measures includes its own process's lag, which a limit of a few read
    as the engine's and fell to where the engine idled (bench/README.md, "A gradient limit
    in the client": with a floor of 4, the 10× rows left the server 0.07–0.16 of a core).
    `tolerance` = 1.25: with the floor keeping a queue of its own (√limit), 2.0 let the
    answers of batched callers under 4–8× overload take 3–4× their p99 at saturation, 1.5
    about 2×, 1.25 no more than at saturation, at the same goodput (bench/README.md, "The
    gradient's tolerance").
    Only engine answers move the limit: UNAVAILABLE (a shard recovering) and other errors
    ("other") neither grow nor shrink it.
    """

    def __init__(
        self,
        initial: float = 32.0,
        min_limit: float = 16.0,
        max_limit: float = 1_000.0,
        tolerance: float = DEFAULT_TOLERANCE,
        smoothing: float = 0.2,
        noload_window_s: float = 10.0,
        min_round_s: float = 0.005,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError("need 1 ≤ min_limit ≤ initial ≤ max_limit")
        if tolerance < 1 or not 0 < smoothing <= 1 or noload_window_s <= 0 or min_round_s <= 0:
            raise ValueError("need tolerance ≥ 1, 0 < smoothing ≤ 1, noload_window_s > 0 and min_round_s > 0")
        self.limit = float(initial)
        self._min = float(min_limit)
        self._max = float(max_limit)
        self._tolerance = tolerance
        self._smoothing = smoothing
        self._min_round_s = min_round_s
        self._clock = clock
        self._noload = WindowedMin(noload_window_s, clock())
        self.in_flight = 0
        self.throttled = 0  # attempts refused here (for benches and tests)
        # The largest attempt seen (a batch's commands): the limit keeps room for two, so a
        # batch caller has one batch in service and the next on its way. Without it a limit
        # below a batch let one batch at a time through and the engine idled between them.
        self._largest_cost = 1
        self.rtt_s = 0.0  # the mean latency of the last round (0: none yet)
        # The round being measured: its start, latency sum and count, whether any attempt
        # of it was refused for load, and the most attempts in flight during it.
        self._round_start = clock()
        self._round_sum_s = 0.0
        self._round_n = 0
        self._round_dropped = False
        self._round_peak = 0

    @property
    def noload_s(self) -> float | None:
        """The unloaded latency the limit is tied to: the quickest answer of the window (None: none yet)."""
        return self._noload.value()

    def try_acquire(self, cost: int = 1, critical: bool = False) -> float | None:
        """The attempt's start (pass it to `release`), or None: refused, not to be sent."""
        if cost > self._largest_cost:
            self._largest_cost = min(cost, int(self._max / 2))
            self.limit = max(self.limit, self._floor())
        if not critical and self.in_flight > 0 and self.in_flight + cost > self.limit:
            self.throttled += cost
            return None
        self.in_flight += cost
        self._round_peak = max(self._round_peak, self.in_flight)
        return self._clock()

    def release(self, started: float, cost: int = 1, answer: str = "ok") -> None:
        """An attempt ended. `answer`: "ok" (the engine answered it), "overloaded" (refused
        for load) or "other" (no evidence about load: UNAVAILABLE, errors, cancellation)."""
        self.in_flight = max(self.in_flight - cost, 0)
        if answer == "other":
            return
        now = self._clock()
        if answer == "overloaded":
            self._round_dropped = True
        else:
            rtt_s = max(now - started, 0.0)
            self._noload.add(rtt_s, now)
            self._round_sum_s += rtt_s
            self._round_n += 1
        # A round lasts about one round trip: its answers are those of one limit's worth of attempts.
        if now - self._round_start >= max(self.rtt_s, self._min_round_s):
            self._end_round(now)

    def retry_after_s(self) -> float:
        """How long an attempt refused here waits before it asks again (`Throttled`'s hint):
        about one round trip, when the attempts in flight have been answered."""
        return max(self.rtt_s, self._min_round_s)

    def _end_round(self, now: float) -> None:
        n, dropped, peak = self._round_n, self._round_dropped, self._round_peak
        if n:
            self.rtt_s = self._round_sum_s / n
        self._round_start, self._round_sum_s, self._round_n = now, 0.0, 0
        self._round_dropped, self._round_peak = False, self.in_flight
        gradient = self._gradient(dropped)
        if gradient is None or (gradient >= 1.0 and 2 * peak < self.limit):
            return  # no evidence, or app-limited: the limit was not tested, so it does not grow
        allowance = math.sqrt(self.limit)  # the queue kept on purpose: grows slowly with the limit
        new = self.limit * gradient + allowance
        smoothed = (1 - self._smoothing) * self.limit + self._smoothing * new
        self.limit = min(self._max, max(self._floor(), smoothed))

    def _floor(self) -> float:
        return max(self._min, 2.0 * self._largest_cost)

    def _gradient(self, dropped: bool) -> float | None:
        if dropped:
            return 0.5  # the engine refused for load: as steep as the gradient goes
        noload = self._noload.value()
        if noload is None or self.rtt_s <= 0:
            return None
        return min(1.0, max(0.5, self._tolerance * noload / self.rtt_s))


class WindowedMin:
    """The smallest value seen over about the last `window_s` (two half-window buckets, so
    an old minimum is forgotten between ½ and 1 window after it was seen)."""

    def __init__(self, window_s: float, now: float) -> None:
        self._half_s = window_s / 2
        self._bucket_start = now
        self._current = math.inf
        self._previous = math.inf

    def add(self, value: float, now: float) -> None:
        self._rotate(now)
        self._current = min(self._current, value)

    def value(self) -> float | None:
        best = min(self._current, self._previous)
        return None if best == math.inf else best

    def _rotate(self, now: float) -> None:
        elapsed = now - self._bucket_start
        if elapsed < self._half_s:
            return
        # One bucket passed: the current becomes the previous; more: both are stale.
        self._previous = self._current if elapsed < 2 * self._half_s else math.inf
        self._current = math.inf
        self._bucket_start = now
