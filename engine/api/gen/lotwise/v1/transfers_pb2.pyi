from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransferLine(_message.Message):
    __slots__ = ("sku", "qty", "lot_id", "unit_value")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    qty: int
    lot_id: str
    unit_value: str
    def __init__(self, sku: _Optional[str] = ..., qty: _Optional[int] = ..., lot_id: _Optional[str] = ..., unit_value: _Optional[str] = ...) -> None: ...

class CreateTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "from_site", "to_site", "lines", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SITE_FIELD_NUMBER: _ClassVar[int]
    TO_SITE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    from_site: str
    to_site: str
    lines: _containers.RepeatedCompositeFieldContainer[TransferLine]
    note: str
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., from_site: _Optional[str] = ..., to_site: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[TransferLine, _Mapping]]] = ..., note: _Optional[str] = ...) -> None: ...

class TransferActionRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    note: str
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ShipTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "eta_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    eta_ms: int
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., eta_ms: _Optional[int] = ...) -> None: ...

class ReceiptLine(_message.Message):
    __slots__ = ("sku", "lot_id", "qty", "damaged_qty")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_QTY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    lot_id: str
    qty: int
    damaged_qty: int
    def __init__(self, sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., damaged_qty: _Optional[int] = ...) -> None: ...

class ReceiveTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "lines", "final")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReceiptLine]
    final: bool
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReceiptLine, _Mapping]]] = ..., final: _Optional[bool] = ...) -> None: ...

class GetTransferRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class TransferLot(_message.Message):
    __slots__ = ("sku", "lot_id", "shipped_qty", "received_qty", "damaged_qty", "short_qty", "expires_at_ms")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_QTY_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_QTY_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_QTY_FIELD_NUMBER: _ClassVar[int]
    SHORT_QTY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    lot_id: str
    shipped_qty: int
    received_qty: int
    damaged_qty: int
    short_qty: int
    expires_at_ms: int
    def __init__(self, sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., shipped_qty: _Optional[int] = ..., received_qty: _Optional[int] = ..., damaged_qty: _Optional[int] = ..., short_qty: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class TransferStep(_message.Message):
    __slots__ = ("action", "state", "actor", "at_ms", "request_id", "note")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    action: str
    state: str
    actor: str
    at_ms: int
    request_id: str
    note: str
    def __init__(self, action: _Optional[str] = ..., state: _Optional[str] = ..., actor: _Optional[str] = ..., at_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class StateTime(_message.Message):
    __slots__ = ("state", "entered_at_ms", "left_at_ms", "duration_ms")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LEFT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    state: str
    entered_at_ms: int
    left_at_ms: int
    duration_ms: int
    def __init__(self, state: _Optional[str] = ..., entered_at_ms: _Optional[int] = ..., left_at_ms: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("transfer_id", "from_site", "to_site", "lines", "state", "requested_by", "eta_ms", "hold_id", "lots", "steps", "state_times", "org_distance", "value", "escalated_to")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SITE_FIELD_NUMBER: _ClassVar[int]
    TO_SITE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_TIMES_FIELD_NUMBER: _ClassVar[int]
    ORG_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_TO_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    from_site: str
    to_site: str
    lines: _containers.RepeatedCompositeFieldContainer[TransferLine]
    state: str
    requested_by: str
    eta_ms: int
    hold_id: str
    lots: _containers.RepeatedCompositeFieldContainer[TransferLot]
    steps: _containers.RepeatedCompositeFieldContainer[TransferStep]
    state_times: _containers.RepeatedCompositeFieldContainer[StateTime]
    org_distance: int
    value: str
    escalated_to: str
    def __init__(self, transfer_id: _Optional[str] = ..., from_site: _Optional[str] = ..., to_site: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[TransferLine, _Mapping]]] = ..., state: _Optional[str] = ..., requested_by: _Optional[str] = ..., eta_ms: _Optional[int] = ..., hold_id: _Optional[str] = ..., lots: _Optional[_Iterable[_Union[TransferLot, _Mapping]]] = ..., steps: _Optional[_Iterable[_Union[TransferStep, _Mapping]]] = ..., state_times: _Optional[_Iterable[_Union[StateTime, _Mapping]]] = ..., org_distance: _Optional[int] = ..., value: _Optional[str] = ..., escalated_to: _Optional[str] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("transfer",)
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("site", "state", "created_after_ms", "created_before_ms", "page_size", "page_token")
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    site: str
    state: str
    created_after_ms: int
    created_before_ms: int
    page_size: int
    page_token: str
    def __init__(self, site: _Optional[str] = ..., state: _Optional[str] = ..., created_after_ms: _Optional[int] = ..., created_before_ms: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("transfers", "next_page_token")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    next_page_token: str
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
