from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HistoryDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_DIMENSION_UNSPECIFIED: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_SKU: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_SITE: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_BIN: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_STATUS: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_OWNER: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_LOT: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_EXPIRY_DAY: _ClassVar[HistoryDimension]
    HISTORY_DIMENSION_RECEIVED_DAY: _ClassVar[HistoryDimension]
HISTORY_DIMENSION_UNSPECIFIED: HistoryDimension
HISTORY_DIMENSION_SKU: HistoryDimension
HISTORY_DIMENSION_SITE: HistoryDimension
HISTORY_DIMENSION_BIN: HistoryDimension
HISTORY_DIMENSION_STATUS: HistoryDimension
HISTORY_DIMENSION_OWNER: HistoryDimension
HISTORY_DIMENSION_LOT: HistoryDimension
HISTORY_DIMENSION_EXPIRY_DAY: HistoryDimension
HISTORY_DIMENSION_RECEIVED_DAY: HistoryDimension

class HistoryGroupValue(_message.Message):
    __slots__ = ("dimension", "value")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    dimension: HistoryDimension
    value: str
    def __init__(self, dimension: _Optional[_Union[HistoryDimension, str]] = ..., value: _Optional[str] = ...) -> None: ...

class GetBalanceAsOfRequest(_message.Message):
    __slots__ = ("as_of_ms", "skus", "sites", "bin_prefix", "statuses", "owner", "lot_id", "expires_from_ms", "expires_to_ms", "group_by", "bin_depth", "limit")
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    BIN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_TO_MS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BIN_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    as_of_ms: int
    skus: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    bin_prefix: str
    statuses: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    lot_id: str
    expires_from_ms: int
    expires_to_ms: int
    group_by: _containers.RepeatedScalarFieldContainer[HistoryDimension]
    bin_depth: int
    limit: int
    def __init__(self, as_of_ms: _Optional[int] = ..., skus: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., bin_prefix: _Optional[str] = ..., statuses: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ..., lot_id: _Optional[str] = ..., expires_from_ms: _Optional[int] = ..., expires_to_ms: _Optional[int] = ..., group_by: _Optional[_Iterable[_Union[HistoryDimension, str]]] = ..., bin_depth: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class BalanceRow(_message.Message):
    __slots__ = ("group", "qty", "held")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    group: _containers.RepeatedCompositeFieldContainer[HistoryGroupValue]
    qty: int
    held: int
    def __init__(self, group: _Optional[_Iterable[_Union[HistoryGroupValue, _Mapping]]] = ..., qty: _Optional[int] = ..., held: _Optional[int] = ...) -> None: ...

class GetBalanceAsOfResponse(_message.Message):
    __slots__ = ("rows", "as_of_ms")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[BalanceRow]
    as_of_ms: int
    def __init__(self, rows: _Optional[_Iterable[_Union[BalanceRow, _Mapping]]] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

class HistoryBucket(_message.Message):
    __slots__ = ("external", "bin", "status", "owner")
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    external: str
    bin: str
    status: str
    owner: str
    def __init__(self, external: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class HistoryLotDates(_message.Message):
    __slots__ = ("received_at_ms", "expires_at_ms", "opened_at_ms")
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    received_at_ms: int
    expires_at_ms: int
    opened_at_ms: int
    def __init__(self, received_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., opened_at_ms: _Optional[int] = ...) -> None: ...

class HistoryMovement(_message.Message):
    __slots__ = ("sku", "site", "seq", "kind", "lot_id", "qty", "src", "dst", "held", "held_delta", "hold_id", "request_id", "doc_ref", "at_ms", "hold_expires_at_ms", "lot", "shard", "batch_seq", "journal_position", "source", "confidence", "business_at_ms")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HELD_DELTA_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_POSITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    seq: int
    kind: str
    lot_id: str
    qty: int
    src: HistoryBucket
    dst: HistoryBucket
    held: HistoryBucket
    held_delta: int
    hold_id: str
    request_id: str
    doc_ref: str
    at_ms: int
    hold_expires_at_ms: int
    lot: HistoryLotDates
    shard: str
    batch_seq: int
    journal_position: int
    source: str
    confidence: float
    business_at_ms: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., src: _Optional[_Union[HistoryBucket, _Mapping]] = ..., dst: _Optional[_Union[HistoryBucket, _Mapping]] = ..., held: _Optional[_Union[HistoryBucket, _Mapping]] = ..., held_delta: _Optional[int] = ..., hold_id: _Optional[str] = ..., request_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., at_ms: _Optional[int] = ..., hold_expires_at_ms: _Optional[int] = ..., lot: _Optional[_Union[HistoryLotDates, _Mapping]] = ..., shard: _Optional[str] = ..., batch_seq: _Optional[int] = ..., journal_position: _Optional[int] = ..., source: _Optional[str] = ..., confidence: _Optional[float] = ..., business_at_ms: _Optional[int] = ...) -> None: ...

class SearchMovementsRequest(_message.Message):
    __slots__ = ("sku", "site", "lot_id", "doc_ref", "hold_id", "request_id", "kinds", "from_ms", "to_ms", "page_size", "cursor")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    lot_id: str
    doc_ref: str
    hold_id: str
    request_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    from_ms: int
    to_ms: int
    page_size: int
    cursor: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., hold_id: _Optional[str] = ..., request_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., page_size: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class SearchMovementsResponse(_message.Message):
    __slots__ = ("movements", "next_cursor")
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    movements: _containers.RepeatedCompositeFieldContainer[HistoryMovement]
    next_cursor: str
    def __init__(self, movements: _Optional[_Iterable[_Union[HistoryMovement, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetConsumptionSeriesRequest(_message.Message):
    __slots__ = ("sku", "site", "from_ms", "to_ms")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    from_ms: int
    to_ms: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ...) -> None: ...

class DayQty(_message.Message):
    __slots__ = ("day", "qty")
    DAY_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    day: str
    qty: int
    def __init__(self, day: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class GetConsumptionSeriesResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[DayQty]
    def __init__(self, points: _Optional[_Iterable[_Union[DayQty, _Mapping]]] = ...) -> None: ...

class GetTurnoverRequest(_message.Message):
    __slots__ = ("skus", "sites", "from_ms", "to_ms", "limit")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    from_ms: int
    to_ms: int
    limit: int
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class TurnoverRow(_message.Message):
    __slots__ = ("sku", "site", "days", "avg_on_hand", "consumed", "turnover_days")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    AVG_ON_HAND_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    TURNOVER_DAYS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    days: int
    avg_on_hand: float
    consumed: int
    turnover_days: float
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., days: _Optional[int] = ..., avg_on_hand: _Optional[float] = ..., consumed: _Optional[int] = ..., turnover_days: _Optional[float] = ...) -> None: ...

class GetTurnoverResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TurnoverRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[TurnoverRow, _Mapping]]] = ...) -> None: ...

class GetExpiryExposureRequest(_message.Message):
    __slots__ = ("as_of_ms", "horizon_days", "skus", "sites", "limit")
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    as_of_ms: int
    horizon_days: int
    skus: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, as_of_ms: _Optional[int] = ..., horizon_days: _Optional[int] = ..., skus: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ExposureRow(_message.Message):
    __slots__ = ("sku", "site", "lot_id", "expires_at_ms", "days_left", "qty", "held")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DAYS_LEFT_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    lot_id: str
    expires_at_ms: int
    days_left: int
    qty: int
    held: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., days_left: _Optional[int] = ..., qty: _Optional[int] = ..., held: _Optional[int] = ...) -> None: ...

class DaysLeftTotal(_message.Message):
    __slots__ = ("days_left", "qty", "lots")
    DAYS_LEFT_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    days_left: int
    qty: int
    lots: int
    def __init__(self, days_left: _Optional[int] = ..., qty: _Optional[int] = ..., lots: _Optional[int] = ...) -> None: ...

class GetExpiryExposureResponse(_message.Message):
    __slots__ = ("rows", "totals")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ExposureRow]
    totals: _containers.RepeatedCompositeFieldContainer[DaysLeftTotal]
    def __init__(self, rows: _Optional[_Iterable[_Union[ExposureRow, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[DaysLeftTotal, _Mapping]]] = ...) -> None: ...

class TraceLotRequest(_message.Message):
    __slots__ = ("lot_id", "sku", "limit")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    sku: str
    limit: int
    def __init__(self, lot_id: _Optional[str] = ..., sku: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class LotStop(_message.Message):
    __slots__ = ("sku", "site", "received_at_ms", "expires_at_ms", "first_at_ms", "last_at_ms", "qty_in", "qty_out", "balance", "movements")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_AT_MS_FIELD_NUMBER: _ClassVar[int]
    QTY_IN_FIELD_NUMBER: _ClassVar[int]
    QTY_OUT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    received_at_ms: int
    expires_at_ms: int
    first_at_ms: int
    last_at_ms: int
    qty_in: int
    qty_out: int
    balance: int
    movements: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., received_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., first_at_ms: _Optional[int] = ..., last_at_ms: _Optional[int] = ..., qty_in: _Optional[int] = ..., qty_out: _Optional[int] = ..., balance: _Optional[int] = ..., movements: _Optional[int] = ...) -> None: ...

class LotDocument(_message.Message):
    __slots__ = ("doc_ref", "sku", "site", "first_at_ms", "last_at_ms", "kinds", "qty", "movements")
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    FIRST_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_AT_MS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    doc_ref: str
    sku: str
    site: str
    first_at_ms: int
    last_at_ms: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    qty: int
    movements: int
    def __init__(self, doc_ref: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., first_at_ms: _Optional[int] = ..., last_at_ms: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., qty: _Optional[int] = ..., movements: _Optional[int] = ...) -> None: ...

class TraceLotResponse(_message.Message):
    __slots__ = ("lot_id", "stops", "documents")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    STOPS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    stops: _containers.RepeatedCompositeFieldContainer[LotStop]
    documents: _containers.RepeatedCompositeFieldContainer[LotDocument]
    def __init__(self, lot_id: _Optional[str] = ..., stops: _Optional[_Iterable[_Union[LotStop, _Mapping]]] = ..., documents: _Optional[_Iterable[_Union[LotDocument, _Mapping]]] = ...) -> None: ...

class GetSinkStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSinkStatusResponse(_message.Message):
    __slots__ = ("stream_position", "acked_position", "pending_messages", "stalled", "running")
    STREAM_POSITION_FIELD_NUMBER: _ClassVar[int]
    ACKED_POSITION_FIELD_NUMBER: _ClassVar[int]
    PENDING_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    stream_position: int
    acked_position: int
    pending_messages: int
    stalled: bool
    running: bool
    def __init__(self, stream_position: _Optional[int] = ..., acked_position: _Optional[int] = ..., pending_messages: _Optional[int] = ..., stalled: _Optional[bool] = ..., running: _Optional[bool] = ...) -> None: ...
