"""bench.hold_lines: many-line holds through the in-process gateway, pickled as Ray would."""

from __future__ import annotations

from bench.hold_lines import run


async def test_it_places_and_commits_many_line_holds_and_reports_cpu_per_order() -> None:
    cpu_ms, wall_ms = await run(lines=12, concurrency=3, orders=6, seed=2)
    assert cpu_ms > 0
    assert wall_ms > 0
