"""The composition root (DESIGN.md §10, §13): the one place that reads `Settings`, picks the
backends (in-memory or JetStream journal, embedded chDB or a ClickHouse server) and
constructs the services. Every entry point — `lotwise up`, `lotwise demo`, the tests'
fixtures, the benches — starts the engine through here.

    async with running_engine(Settings()) as engine: ...   # the whole engine
    gateway = local_gateway(shards=2)                      # shards in this process, no Ray
"""

from engine.bootstrap.config import SettingsProblem, check_settings
from engine.bootstrap.engine import RunningEngine, running_engine
from engine.bootstrap.local import in_process_gateway, local_gateway
from engine.bootstrap.ray import shutdown_ray, start_ray

__all__ = [
    "RunningEngine",
    "SettingsProblem",
    "check_settings",
    "in_process_gateway",
    "local_gateway",
    "running_engine",
    "shutdown_ray",
    "start_ray",
]
