from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardCheck(_message.Message):
    __slots__ = ("shard", "batch_seq", "live_hash", "rebuilt_hash", "ok", "error", "replayed_batches")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIVE_HASH_FIELD_NUMBER: _ClassVar[int]
    REBUILT_HASH_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    shard: str
    batch_seq: int
    live_hash: str
    rebuilt_hash: str
    ok: bool
    error: str
    replayed_batches: int
    def __init__(self, shard: _Optional[str] = ..., batch_seq: _Optional[int] = ..., live_hash: _Optional[str] = ..., rebuilt_hash: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., replayed_batches: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("ok", "shards")
    OK_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    shards: _containers.RepeatedCompositeFieldContainer[ShardCheck]
    def __init__(self, ok: _Optional[bool] = ..., shards: _Optional[_Iterable[_Union[ShardCheck, _Mapping]]] = ...) -> None: ...

class ShardStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStat(_message.Message):
    __slots__ = ("shard", "state", "failure", "cells", "batches", "ops", "batch_seq", "position", "recoveries", "cells_with_holds")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RECOVERIES_FIELD_NUMBER: _ClassVar[int]
    CELLS_WITH_HOLDS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    state: str
    failure: str
    cells: int
    batches: int
    ops: int
    batch_seq: int
    position: int
    recoveries: int
    cells_with_holds: int
    def __init__(self, shard: _Optional[str] = ..., state: _Optional[str] = ..., failure: _Optional[str] = ..., cells: _Optional[int] = ..., batches: _Optional[int] = ..., ops: _Optional[int] = ..., batch_seq: _Optional[int] = ..., position: _Optional[int] = ..., recoveries: _Optional[int] = ..., cells_with_holds: _Optional[int] = ...) -> None: ...

class ShardStatsResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardStat]
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardStat, _Mapping]]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("batch_seq",)
    class BatchSeqEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    batch_seq: _containers.ScalarMap[str, int]
    def __init__(self, batch_seq: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PinPairRequest(_message.Message):
    __slots__ = ("sku", "site")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class PinPairResponse(_message.Message):
    __slots__ = ("shard",)
    SHARD_FIELD_NUMBER: _ClassVar[int]
    shard: str
    def __init__(self, shard: _Optional[str] = ...) -> None: ...
