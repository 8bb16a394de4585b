from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotLine(_message.Message):
    __slots__ = ("site", "sku", "lot_id", "bin", "status", "qty")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    lot_id: str
    bin: str
    status: str
    qty: int
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class SubmitStockSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id", "source", "as_of_ms", "lines")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    source: str
    as_of_ms: int
    lines: _containers.RepeatedCompositeFieldContainer[SnapshotLine]
    def __init__(self, snapshot_id: _Optional[str] = ..., source: _Optional[str] = ..., as_of_ms: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[SnapshotLine, _Mapping]]] = ...) -> None: ...

class GetReconciliationReportRequest(_message.Message):
    __slots__ = ("snapshot_id",)
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    def __init__(self, snapshot_id: _Optional[str] = ...) -> None: ...

class Difference(_message.Message):
    __slots__ = ("site", "sku", "lot_id", "bin", "status", "external_qty", "book_qty", "diff", "classification", "value", "streak")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_QTY_FIELD_NUMBER: _ClassVar[int]
    BOOK_QTY_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STREAK_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    lot_id: str
    bin: str
    status: str
    external_qty: int
    book_qty: int
    diff: int
    classification: str
    value: float
    streak: int
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., external_qty: _Optional[int] = ..., book_qty: _Optional[int] = ..., diff: _Optional[int] = ..., classification: _Optional[str] = ..., value: _Optional[float] = ..., streak: _Optional[int] = ...) -> None: ...

class PairSummary(_message.Message):
    __slots__ = ("site", "sku", "lines", "timing", "within_tolerance", "real", "abs_diff", "value_at_risk")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    WITHIN_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    VALUE_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    lines: int
    timing: int
    within_tolerance: int
    real: int
    abs_diff: int
    value_at_risk: float
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ..., lines: _Optional[int] = ..., timing: _Optional[int] = ..., within_tolerance: _Optional[int] = ..., real: _Optional[int] = ..., abs_diff: _Optional[int] = ..., value_at_risk: _Optional[float] = ...) -> None: ...

class ReconciliationReport(_message.Message):
    __slots__ = ("snapshot_id", "source", "as_of_ms", "lines", "matched", "timing", "within_tolerance", "real", "record_accuracy", "value_at_risk", "pairs", "differences", "proposal_ids", "alert_ids")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    WITHIN_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    RECORD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALUE_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_IDS_FIELD_NUMBER: _ClassVar[int]
    ALERT_IDS_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    source: str
    as_of_ms: int
    lines: int
    matched: int
    timing: int
    within_tolerance: int
    real: int
    record_accuracy: float
    value_at_risk: float
    pairs: _containers.RepeatedCompositeFieldContainer[PairSummary]
    differences: _containers.RepeatedCompositeFieldContainer[Difference]
    proposal_ids: _containers.RepeatedScalarFieldContainer[str]
    alert_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot_id: _Optional[str] = ..., source: _Optional[str] = ..., as_of_ms: _Optional[int] = ..., lines: _Optional[int] = ..., matched: _Optional[int] = ..., timing: _Optional[int] = ..., within_tolerance: _Optional[int] = ..., real: _Optional[int] = ..., record_accuracy: _Optional[float] = ..., value_at_risk: _Optional[float] = ..., pairs: _Optional[_Iterable[_Union[PairSummary, _Mapping]]] = ..., differences: _Optional[_Iterable[_Union[Difference, _Mapping]]] = ..., proposal_ids: _Optional[_Iterable[str]] = ..., alert_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("proposal_id", "site", "sku", "lot_id", "bin", "status", "variance", "external_qty", "book_qty", "origin", "proposed_by", "proposed_at_ms", "state", "decided_by", "decided_at_ms", "note", "adjust_request_id")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_QTY_FIELD_NUMBER: _ClassVar[int]
    BOOK_QTY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_BY_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ADJUST_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    site: str
    sku: str
    lot_id: str
    bin: str
    status: str
    variance: int
    external_qty: int
    book_qty: int
    origin: str
    proposed_by: str
    proposed_at_ms: int
    state: str
    decided_by: str
    decided_at_ms: int
    note: str
    adjust_request_id: str
    def __init__(self, proposal_id: _Optional[str] = ..., site: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., variance: _Optional[int] = ..., external_qty: _Optional[int] = ..., book_qty: _Optional[int] = ..., origin: _Optional[str] = ..., proposed_by: _Optional[str] = ..., proposed_at_ms: _Optional[int] = ..., state: _Optional[str] = ..., decided_by: _Optional[str] = ..., decided_at_ms: _Optional[int] = ..., note: _Optional[str] = ..., adjust_request_id: _Optional[str] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("site", "state")
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    site: str
    state: str
    def __init__(self, site: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals",)
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ...) -> None: ...

class ProposalActionRequest(_message.Message):
    __slots__ = ("proposal_id", "note")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    note: str
    def __init__(self, proposal_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ProposalResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ...) -> None: ...

class ShelfCount(_message.Message):
    __slots__ = ("site", "bin", "sku", "counted", "confidence")
    SITE_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    site: str
    bin: str
    sku: str
    counted: int
    confidence: float
    def __init__(self, site: _Optional[str] = ..., bin: _Optional[str] = ..., sku: _Optional[str] = ..., counted: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class SubmitShelfCountsRequest(_message.Message):
    __slots__ = ("count_id", "source", "counts")
    COUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    count_id: str
    source: str
    counts: _containers.RepeatedCompositeFieldContainer[ShelfCount]
    def __init__(self, count_id: _Optional[str] = ..., source: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[ShelfCount, _Mapping]]] = ...) -> None: ...

class ShelfLine(_message.Message):
    __slots__ = ("site", "bin", "sku", "counted", "book_qty", "confidence")
    SITE_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    BOOK_QTY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    site: str
    bin: str
    sku: str
    counted: int
    book_qty: int
    confidence: float
    def __init__(self, site: _Optional[str] = ..., bin: _Optional[str] = ..., sku: _Optional[str] = ..., counted: _Optional[int] = ..., book_qty: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class ShelfCountsResponse(_message.Message):
    __slots__ = ("out_of_stock", "low_facing", "unconfirmed", "proposal_ids")
    OUT_OF_STOCK_FIELD_NUMBER: _ClassVar[int]
    LOW_FACING_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_IDS_FIELD_NUMBER: _ClassVar[int]
    out_of_stock: _containers.RepeatedCompositeFieldContainer[ShelfLine]
    low_facing: _containers.RepeatedCompositeFieldContainer[ShelfLine]
    unconfirmed: _containers.RepeatedCompositeFieldContainer[ShelfLine]
    proposal_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, out_of_stock: _Optional[_Iterable[_Union[ShelfLine, _Mapping]]] = ..., low_facing: _Optional[_Iterable[_Union[ShelfLine, _Mapping]]] = ..., unconfirmed: _Optional[_Iterable[_Union[ShelfLine, _Mapping]]] = ..., proposal_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunExpirySweepRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunExpirySweepResponse(_message.Message):
    __slots__ = ("rows", "promotion_tasks", "status_moves", "refused", "timers")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_TASKS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MOVES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    promotion_tasks: int
    status_moves: int
    refused: int
    timers: int
    def __init__(self, rows: _Optional[int] = ..., promotion_tasks: _Optional[int] = ..., status_moves: _Optional[int] = ..., refused: _Optional[int] = ..., timers: _Optional[int] = ...) -> None: ...
