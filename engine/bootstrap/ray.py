"""Ray for a process that drives engines: the tests' session, the benches."""

from __future__ import annotations

from engine.settings import Settings


def start_ray(settings: Settings) -> None:
    """Start (or join) the Ray `settings` name; a no-op when this process has one already."""
    from engine.bootstrap.config import ray_config
    from engine.runtime.cluster import init_ray

    init_ray(ray_config(settings))


def shutdown_ray() -> None:
    from engine.runtime.cluster import shutdown_ray as stop

    stop()
