"""The gateway: stateless coordinator between the API and the shards (DESIGN.md §5–8).

It routes each op to its shard's micro-batcher (`router`), makes multi-line holds
all-or-nothing, compensating the lines already held when one fails (`holds`), fans
reads out over shards (`reads`), keeps every shard's catalog alike (`catalog`), and
gives operators stats, snapshots and verify (`operations`). `Gateway` (`facade`) is
the one object callers hold.
"""

from engine.runtime.gateway.facade import Gateway, GatewayConfig, ShardPorts
from engine.runtime.gateway.holds import UNDO_SUFFIX
from engine.runtime.gateway.operations import ShardAdmin
from engine.runtime.gateway.router import DirectoryStore, MemoryDirectoryStore, ShardFactory

__all__ = [
    "UNDO_SUFFIX",
    "DirectoryStore",
    "Gateway",
    "GatewayConfig",
    "MemoryDirectoryStore",
    "ShardAdmin",
    "ShardFactory",
    "ShardPorts",
]
