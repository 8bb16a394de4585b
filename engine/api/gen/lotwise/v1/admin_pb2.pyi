from google.api import annotations_pb2 as _annotations_pb2
from engine.api.gen.lotwise.v1 import inventory_pb2 as _inventory_pb2
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

class DeadLetter(_message.Message):
    __slots__ = ("seq", "key", "subject", "code", "reason", "event_id", "event_type", "deliveries", "failed_at_ms", "payload", "headers", "payload_size")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    key: str
    subject: str
    code: str
    reason: str
    event_id: str
    event_type: str
    deliveries: int
    failed_at_ms: int
    payload: bytes
    headers: _containers.ScalarMap[str, str]
    payload_size: int
    def __init__(self, seq: _Optional[int] = ..., key: _Optional[str] = ..., subject: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., deliveries: _Optional[int] = ..., failed_at_ms: _Optional[int] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., payload_size: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("after_seq", "limit", "code")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    code: str
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., code: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("letters", "next_after_seq", "total")
    LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_after_seq: int
    total: int
    def __init__(self, letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_after_seq: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class GetDeadLetterRequest(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class GetDeadLetterResponse(_message.Message):
    __slots__ = ("letter",)
    LETTER_FIELD_NUMBER: _ClassVar[int]
    letter: DeadLetter
    def __init__(self, letter: _Optional[_Union[DeadLetter, _Mapping]] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("seqs", "all", "code")
    SEQS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    code: str
    def __init__(self, seqs: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ..., code: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed", "failed")
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    replayed: _containers.RepeatedScalarFieldContainer[int]
    failed: _containers.RepeatedCompositeFieldContainer[ReplayFailure]
    def __init__(self, replayed: _Optional[_Iterable[int]] = ..., failed: _Optional[_Iterable[_Union[ReplayFailure, _Mapping]]] = ...) -> None: ...

class ReplayFailure(_message.Message):
    __slots__ = ("seq", "error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    error: str
    def __init__(self, seq: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ImportRow(_message.Message):
    __slots__ = ("line", "sku", "site", "lot")
    LINE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    line: int
    sku: _inventory_pb2.Sku
    site: _inventory_pb2.Site
    lot: _inventory_pb2.ReceiveRequest
    def __init__(self, line: _Optional[int] = ..., sku: _Optional[_Union[_inventory_pb2.Sku, _Mapping]] = ..., site: _Optional[_Union[_inventory_pb2.Site, _Mapping]] = ..., lot: _Optional[_Union[_inventory_pb2.ReceiveRequest, _Mapping]] = ...) -> None: ...

class ImportLots(_message.Message):
    __slots__ = ("line", "request_id", "sku", "site", "lot_id", "qty", "bin", "status", "owner", "expires_at_ms", "received_at_ms", "opened_at_ms", "doc_ref", "source")
    LINE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    line: _containers.RepeatedScalarFieldContainer[int]
    request_id: _containers.RepeatedScalarFieldContainer[str]
    sku: _containers.RepeatedScalarFieldContainer[str]
    site: _containers.RepeatedScalarFieldContainer[str]
    lot_id: _containers.RepeatedScalarFieldContainer[str]
    qty: _containers.RepeatedScalarFieldContainer[int]
    bin: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    owner: _containers.RepeatedScalarFieldContainer[str]
    expires_at_ms: _containers.RepeatedScalarFieldContainer[int]
    received_at_ms: _containers.RepeatedScalarFieldContainer[int]
    opened_at_ms: _containers.RepeatedScalarFieldContainer[int]
    doc_ref: _containers.RepeatedScalarFieldContainer[str]
    source: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line: _Optional[_Iterable[int]] = ..., request_id: _Optional[_Iterable[str]] = ..., sku: _Optional[_Iterable[str]] = ..., site: _Optional[_Iterable[str]] = ..., lot_id: _Optional[_Iterable[str]] = ..., qty: _Optional[_Iterable[int]] = ..., bin: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., owner: _Optional[_Iterable[str]] = ..., expires_at_ms: _Optional[_Iterable[int]] = ..., received_at_ms: _Optional[_Iterable[int]] = ..., opened_at_ms: _Optional[_Iterable[int]] = ..., doc_ref: _Optional[_Iterable[str]] = ..., source: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportChunk(_message.Message):
    __slots__ = ("chunk_seq", "rows", "lots")
    CHUNK_SEQ_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    chunk_seq: int
    rows: _containers.RepeatedCompositeFieldContainer[ImportRow]
    lots: ImportLots
    def __init__(self, chunk_seq: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[ImportRow, _Mapping]]] = ..., lots: _Optional[_Union[ImportLots, _Mapping]] = ...) -> None: ...

class ImportRefusal(_message.Message):
    __slots__ = ("line", "code", "message", "fields")
    LINE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    line: int
    code: str
    message: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportChunkReply(_message.Message):
    __slots__ = ("chunk_seq", "skus", "sites", "lots", "units", "refused")
    CHUNK_SEQ_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    chunk_seq: int
    skus: int
    sites: int
    lots: int
    units: int
    refused: _containers.RepeatedCompositeFieldContainer[ImportRefusal]
    def __init__(self, chunk_seq: _Optional[int] = ..., skus: _Optional[int] = ..., sites: _Optional[int] = ..., lots: _Optional[int] = ..., units: _Optional[int] = ..., refused: _Optional[_Iterable[_Union[ImportRefusal, _Mapping]]] = ...) -> None: ...

class OrgNode(_message.Message):
    __slots__ = ("node_id", "parent_id", "name", "legal_entity", "path")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    parent_id: str
    name: str
    legal_entity: bool
    path: str
    def __init__(self, node_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., name: _Optional[str] = ..., legal_entity: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class PutOrgNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: OrgNode
    def __init__(self, node: _Optional[_Union[OrgNode, _Mapping]] = ...) -> None: ...

class PutOrgNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: OrgNode
    def __init__(self, node: _Optional[_Union[OrgNode, _Mapping]] = ...) -> None: ...

class MoveOrgNodeRequest(_message.Message):
    __slots__ = ("node_id", "new_parent_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    new_parent_id: str
    def __init__(self, node_id: _Optional[str] = ..., new_parent_id: _Optional[str] = ...) -> None: ...

class MoveOrgNodeResponse(_message.Message):
    __slots__ = ("node", "sites_moved")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SITES_MOVED_FIELD_NUMBER: _ClassVar[int]
    node: OrgNode
    sites_moved: int
    def __init__(self, node: _Optional[_Union[OrgNode, _Mapping]] = ..., sites_moved: _Optional[int] = ...) -> None: ...

class ListOrgNodesRequest(_message.Message):
    __slots__ = ("org_prefix",)
    ORG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    org_prefix: str
    def __init__(self, org_prefix: _Optional[str] = ...) -> None: ...

class ListOrgNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[OrgNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[OrgNode, _Mapping]]] = ...) -> None: ...
