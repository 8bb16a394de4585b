from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RemovalStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REMOVAL_STRATEGY_FEFO: _ClassVar[RemovalStrategy]
    REMOVAL_STRATEGY_FIFO: _ClassVar[RemovalStrategy]
    REMOVAL_STRATEGY_LIFO: _ClassVar[RemovalStrategy]
    REMOVAL_STRATEGY_LOT: _ClassVar[RemovalStrategy]

class HoldState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOLD_STATE_UNSPECIFIED: _ClassVar[HoldState]
    HOLD_STATE_ACTIVE: _ClassVar[HoldState]
    HOLD_STATE_COMMITTED: _ClassVar[HoldState]
    HOLD_STATE_RELEASED: _ClassVar[HoldState]
    HOLD_STATE_EXPIRED: _ClassVar[HoldState]
    HOLD_STATE_PARTIAL: _ClassVar[HoldState]

class Dimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_UNSPECIFIED: _ClassVar[Dimension]
    DIMENSION_BIN: _ClassVar[Dimension]
    DIMENSION_STATUS: _ClassVar[Dimension]
    DIMENSION_OWNER: _ClassVar[Dimension]
    DIMENSION_LOT: _ClassVar[Dimension]
    DIMENSION_EXPIRY_DAY: _ClassVar[Dimension]
    DIMENSION_RECEIVED_DAY: _ClassVar[Dimension]

class CountSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUNT_SOURCE_CYCLE: _ClassVar[CountSource]
    COUNT_SOURCE_RFID: _ClassVar[CountSource]
    COUNT_SOURCE_RECOGNISER: _ClassVar[CountSource]
REMOVAL_STRATEGY_FEFO: RemovalStrategy
REMOVAL_STRATEGY_FIFO: RemovalStrategy
REMOVAL_STRATEGY_LIFO: RemovalStrategy
REMOVAL_STRATEGY_LOT: RemovalStrategy
HOLD_STATE_UNSPECIFIED: HoldState
HOLD_STATE_ACTIVE: HoldState
HOLD_STATE_COMMITTED: HoldState
HOLD_STATE_RELEASED: HoldState
HOLD_STATE_EXPIRED: HoldState
HOLD_STATE_PARTIAL: HoldState
DIMENSION_UNSPECIFIED: Dimension
DIMENSION_BIN: Dimension
DIMENSION_STATUS: Dimension
DIMENSION_OWNER: Dimension
DIMENSION_LOT: Dimension
DIMENSION_EXPIRY_DAY: Dimension
DIMENSION_RECEIVED_DAY: Dimension
COUNT_SOURCE_CYCLE: CountSource
COUNT_SOURCE_RFID: CountSource
COUNT_SOURCE_RECOGNISER: CountSource

class Sku(_message.Message):
    __slots__ = ("sku", "name", "unit", "opened_shelf_life_days", "opened_shelf_life_hours", "substitutes")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    OPENED_SHELF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    OPENED_SHELF_LIFE_HOURS_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTES_FIELD_NUMBER: _ClassVar[int]
    sku: str
    name: str
    unit: str
    opened_shelf_life_days: int
    opened_shelf_life_hours: int
    substitutes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sku: _Optional[str] = ..., name: _Optional[str] = ..., unit: _Optional[str] = ..., opened_shelf_life_days: _Optional[int] = ..., opened_shelf_life_hours: _Optional[int] = ..., substitutes: _Optional[_Iterable[str]] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("site", "org_path", "kind", "name")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ORG_PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    site: str
    org_path: str
    kind: str
    name: str
    def __init__(self, site: _Optional[str] = ..., org_path: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PutSkuRequest(_message.Message):
    __slots__ = ("request_id", "sku")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: Sku
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[_Union[Sku, _Mapping]] = ...) -> None: ...

class PutSkuResponse(_message.Message):
    __slots__ = ("sku",)
    SKU_FIELD_NUMBER: _ClassVar[int]
    sku: Sku
    def __init__(self, sku: _Optional[_Union[Sku, _Mapping]] = ...) -> None: ...

class PutSiteRequest(_message.Message):
    __slots__ = ("request_id", "site")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    site: Site
    def __init__(self, request_id: _Optional[str] = ..., site: _Optional[_Union[Site, _Mapping]] = ...) -> None: ...

class PutSiteResponse(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: Site
    def __init__(self, site: _Optional[_Union[Site, _Mapping]] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ("org_prefix",)
    ORG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    org_prefix: str
    def __init__(self, org_prefix: _Optional[str] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ...) -> None: ...

class ListSkusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSkusResponse(_message.Message):
    __slots__ = ("skus",)
    SKUS_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedCompositeFieldContainer[Sku]
    def __init__(self, skus: _Optional[_Iterable[_Union[Sku, _Mapping]]] = ...) -> None: ...

class Finance(_message.Message):
    __slots__ = ("currency", "unit_cost", "unit_price", "tax_rate", "terms", "customer_tier", "sales_channel", "tax_attribute", "gift", "return_of", "to_site", "to_company")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UNIT_COST_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    TAX_RATE_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_TIER_FIELD_NUMBER: _ClassVar[int]
    SALES_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TAX_ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    GIFT_FIELD_NUMBER: _ClassVar[int]
    RETURN_OF_FIELD_NUMBER: _ClassVar[int]
    TO_SITE_FIELD_NUMBER: _ClassVar[int]
    TO_COMPANY_FIELD_NUMBER: _ClassVar[int]
    currency: str
    unit_cost: str
    unit_price: str
    tax_rate: str
    terms: str
    customer_tier: str
    sales_channel: str
    tax_attribute: str
    gift: bool
    return_of: str
    to_site: str
    to_company: str
    def __init__(self, currency: _Optional[str] = ..., unit_cost: _Optional[str] = ..., unit_price: _Optional[str] = ..., tax_rate: _Optional[str] = ..., terms: _Optional[str] = ..., customer_tier: _Optional[str] = ..., sales_channel: _Optional[str] = ..., tax_attribute: _Optional[str] = ..., gift: _Optional[bool] = ..., return_of: _Optional[str] = ..., to_site: _Optional[str] = ..., to_company: _Optional[str] = ...) -> None: ...

class ReceiveRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "qty", "bin", "status", "owner", "expires_at_ms", "received_at_ms", "opened_at_ms", "doc_ref", "source", "finance")
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
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    bin: str
    status: str
    owner: str
    expires_at_ms: int
    received_at_ms: int
    opened_at_ms: int
    doc_ref: str
    source: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., received_at_ms: _Optional[int] = ..., opened_at_ms: _Optional[int] = ..., doc_ref: _Optional[str] = ..., source: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ReceiveResponse(_message.Message):
    __slots__ = ("lot_id", "qty")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    qty: int
    def __init__(self, lot_id: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class MoveRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "qty", "from_bin", "to_bin", "status", "owner", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    FROM_BIN_FIELD_NUMBER: _ClassVar[int]
    TO_BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_bin: str
    to_bin: str
    status: str
    owner: str
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., from_bin: _Optional[str] = ..., to_bin: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class MoveResponse(_message.Message):
    __slots__ = ("qty",)
    QTY_FIELD_NUMBER: _ClassVar[int]
    qty: int
    def __init__(self, qty: _Optional[int] = ...) -> None: ...

class ChangeStatusRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "qty", "from_status", "to_status", "bin", "owner", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_status: str
    to_status: str
    bin: str
    owner: str
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., from_status: _Optional[str] = ..., to_status: _Optional[str] = ..., bin: _Optional[str] = ..., owner: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ChangeStatusResponse(_message.Message):
    __slots__ = ("qty",)
    QTY_FIELD_NUMBER: _ClassVar[int]
    qty: int
    def __init__(self, qty: _Optional[int] = ...) -> None: ...

class ReserveLine(_message.Message):
    __slots__ = ("sku", "site", "qty", "strategy", "lot_id", "owner", "min_shelf_life_days", "bin_prefix")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MIN_SHELF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    BIN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    qty: int
    strategy: RemovalStrategy
    lot_id: str
    owner: str
    min_shelf_life_days: float
    bin_prefix: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., qty: _Optional[int] = ..., strategy: _Optional[_Union[RemovalStrategy, str]] = ..., lot_id: _Optional[str] = ..., owner: _Optional[str] = ..., min_shelf_life_days: _Optional[float] = ..., bin_prefix: _Optional[str] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("request_id", "hold_id", "lines", "ttl_ms", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    hold_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReserveLine]
    ttl_ms: int
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., hold_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReserveLine, _Mapping]]] = ..., ttl_ms: _Optional[int] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("lot_id", "bin", "status", "owner", "qty", "expires_at_ms")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    bin: str
    status: str
    owner: str
    qty: int
    expires_at_ms: int
    def __init__(self, lot_id: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., qty: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class HoldPart(_message.Message):
    __slots__ = ("sku", "site", "state", "allocations", "held_qty", "committed_qty", "released_qty", "created_at_ms", "expires_at_ms")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    HELD_QTY_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_QTY_FIELD_NUMBER: _ClassVar[int]
    RELEASED_QTY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    state: HoldState
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    held_qty: int
    committed_qty: int
    released_qty: int
    created_at_ms: int
    expires_at_ms: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., state: _Optional[_Union[HoldState, str]] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ..., held_qty: _Optional[int] = ..., committed_qty: _Optional[int] = ..., released_qty: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("hold_id", "state", "parts", "expires_at_ms", "held_qty", "committed_qty", "released_qty")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HELD_QTY_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_QTY_FIELD_NUMBER: _ClassVar[int]
    RELEASED_QTY_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    state: HoldState
    parts: _containers.RepeatedCompositeFieldContainer[HoldPart]
    expires_at_ms: int
    held_qty: int
    committed_qty: int
    released_qty: int
    def __init__(self, hold_id: _Optional[str] = ..., state: _Optional[_Union[HoldState, str]] = ..., parts: _Optional[_Iterable[_Union[HoldPart, _Mapping]]] = ..., expires_at_ms: _Optional[int] = ..., held_qty: _Optional[int] = ..., committed_qty: _Optional[int] = ..., released_qty: _Optional[int] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ...) -> None: ...

class SellRequest(_message.Message):
    __slots__ = ("request_id", "lines", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReserveLine]
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReserveLine, _Mapping]]] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class SellResponse(_message.Message):
    __slots__ = ("sale", "sold_qty")
    SALE_FIELD_NUMBER: _ClassVar[int]
    SOLD_QTY_FIELD_NUMBER: _ClassVar[int]
    sale: Hold
    sold_qty: int
    def __init__(self, sale: _Optional[_Union[Hold, _Mapping]] = ..., sold_qty: _Optional[int] = ...) -> None: ...

class CommitLine(_message.Message):
    __slots__ = ("sku", "site", "qty")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    qty: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("request_id", "hold_id", "lines", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    hold_id: str
    lines: _containers.RepeatedCompositeFieldContainer[CommitLine]
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., hold_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CommitLine, _Mapping]]] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("hold", "committed_qty", "released_qty")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_QTY_FIELD_NUMBER: _ClassVar[int]
    RELEASED_QTY_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    committed_qty: int
    released_qty: int
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., committed_qty: _Optional[int] = ..., released_qty: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("request_id", "hold_id", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    hold_id: str
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., hold_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("hold", "released_qty")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    RELEASED_QTY_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    released_qty: int
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., released_qty: _Optional[int] = ...) -> None: ...

class ConsumeRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "qty", "lot_id", "bin_prefix", "owner", "strategy", "doc_ref", "destination", "status", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    qty: int
    lot_id: str
    bin_prefix: str
    owner: str
    strategy: RemovalStrategy
    doc_ref: str
    destination: str
    status: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., qty: _Optional[int] = ..., lot_id: _Optional[str] = ..., bin_prefix: _Optional[str] = ..., owner: _Optional[str] = ..., strategy: _Optional[_Union[RemovalStrategy, str]] = ..., doc_ref: _Optional[str] = ..., destination: _Optional[str] = ..., status: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ConsumeResponse(_message.Message):
    __slots__ = ("consumed_qty", "shortfall_qty", "discrepancy", "allocations")
    CONSUMED_QTY_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_QTY_FIELD_NUMBER: _ClassVar[int]
    DISCREPANCY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    consumed_qty: int
    shortfall_qty: int
    discrepancy: bool
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    def __init__(self, consumed_qty: _Optional[int] = ..., shortfall_qty: _Optional[int] = ..., discrepancy: _Optional[bool] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ...) -> None: ...

class AdjustRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "counted_qty", "bin", "status", "owner", "reason", "doc_ref", "finance", "delta_qty")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QTY_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    DELTA_QTY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    counted_qty: int
    bin: str
    status: str
    owner: str
    reason: str
    doc_ref: str
    finance: Finance
    delta_qty: int
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., counted_qty: _Optional[int] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., reason: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ..., delta_qty: _Optional[int] = ...) -> None: ...

class AdjustResponse(_message.Message):
    __slots__ = ("previous_qty", "counted_qty", "variance")
    PREVIOUS_QTY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QTY_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    previous_qty: int
    counted_qty: int
    variance: int
    def __init__(self, previous_qty: _Optional[int] = ..., counted_qty: _Optional[int] = ..., variance: _Optional[int] = ...) -> None: ...

class GetHoldRequest(_message.Message):
    __slots__ = ("hold_id",)
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    def __init__(self, hold_id: _Optional[str] = ...) -> None: ...

class GetHoldResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ...) -> None: ...

class SliceFilter(_message.Message):
    __slots__ = ("statuses", "owner", "bin_prefix", "lot_id", "sellable_only", "min_shelf_life_days", "max_shelf_life_days", "out_of_stock_only")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BIN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    SELLABLE_ONLY_FIELD_NUMBER: _ClassVar[int]
    MIN_SHELF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_SHELF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_STOCK_ONLY_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    bin_prefix: str
    lot_id: str
    sellable_only: bool
    min_shelf_life_days: float
    max_shelf_life_days: float
    out_of_stock_only: bool
    def __init__(self, statuses: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ..., bin_prefix: _Optional[str] = ..., lot_id: _Optional[str] = ..., sellable_only: _Optional[bool] = ..., min_shelf_life_days: _Optional[float] = ..., max_shelf_life_days: _Optional[float] = ..., out_of_stock_only: _Optional[bool] = ...) -> None: ...

class GroupValue(_message.Message):
    __slots__ = ("dimension", "value")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    dimension: Dimension
    value: str
    def __init__(self, dimension: _Optional[_Union[Dimension, str]] = ..., value: _Optional[str] = ...) -> None: ...

class SliceRow(_message.Message):
    __slots__ = ("group", "qty", "held", "available", "on_hand", "earliest_expiry_ms", "out_of_stock_since_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_EXPIRY_MS_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_STOCK_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    group: _containers.RepeatedCompositeFieldContainer[GroupValue]
    qty: int
    held: int
    available: int
    on_hand: int
    earliest_expiry_ms: int
    out_of_stock_since_ms: int
    def __init__(self, group: _Optional[_Iterable[_Union[GroupValue, _Mapping]]] = ..., qty: _Optional[int] = ..., held: _Optional[int] = ..., available: _Optional[int] = ..., on_hand: _Optional[int] = ..., earliest_expiry_ms: _Optional[int] = ..., out_of_stock_since_ms: _Optional[int] = ...) -> None: ...

class GetAvailabilityRequest(_message.Message):
    __slots__ = ("sku", "site", "group_by", "filter", "bin_depth")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BIN_DEPTH_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    group_by: _containers.RepeatedScalarFieldContainer[Dimension]
    filter: SliceFilter
    bin_depth: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[Dimension, str]]] = ..., filter: _Optional[_Union[SliceFilter, _Mapping]] = ..., bin_depth: _Optional[int] = ...) -> None: ...

class GetAvailabilityResponse(_message.Message):
    __slots__ = ("sku", "site", "available", "rows", "as_of_ms")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    available: int
    rows: _containers.RepeatedCompositeFieldContainer[SliceRow]
    as_of_ms: int
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., available: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[SliceRow, _Mapping]]] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

class QueryStockRequest(_message.Message):
    __slots__ = ("skus", "sites", "org_prefix", "filter", "group_by", "by_sku", "by_site", "bin_depth", "limit", "page_size", "page_token")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    ORG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BY_SKU_FIELD_NUMBER: _ClassVar[int]
    BY_SITE_FIELD_NUMBER: _ClassVar[int]
    BIN_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    org_prefix: str
    filter: SliceFilter
    group_by: _containers.RepeatedScalarFieldContainer[Dimension]
    by_sku: bool
    by_site: bool
    bin_depth: int
    limit: int
    page_size: int
    page_token: str
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., org_prefix: _Optional[str] = ..., filter: _Optional[_Union[SliceFilter, _Mapping]] = ..., group_by: _Optional[_Iterable[_Union[Dimension, str]]] = ..., by_sku: _Optional[bool] = ..., by_site: _Optional[bool] = ..., bin_depth: _Optional[int] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class StockRow(_message.Message):
    __slots__ = ("sku", "site", "row")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    row: SliceRow
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., row: _Optional[_Union[SliceRow, _Mapping]] = ...) -> None: ...

class QueryStockResponse(_message.Message):
    __slots__ = ("rows", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[StockRow]
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[StockRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListHoldsRequest(_message.Message):
    __slots__ = ("sku", "site", "states", "expiring_before_ms", "page_size", "page_token")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    states: _containers.RepeatedScalarFieldContainer[HoldState]
    expiring_before_ms: int
    page_size: int
    page_token: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., states: _Optional[_Iterable[_Union[HoldState, str]]] = ..., expiring_before_ms: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHoldsResponse(_message.Message):
    __slots__ = ("holds", "next_page_token")
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    next_page_token: str
    def __init__(self, holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("put_sku", "put_site", "receive", "move", "change_status", "reserve", "commit", "release", "consume", "adjust", "get_hold", "get_availability", "sell", "apply_device_ops", "timeout_ms")
    PUT_SKU_FIELD_NUMBER: _ClassVar[int]
    PUT_SITE_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CONSUME_FIELD_NUMBER: _ClassVar[int]
    ADJUST_FIELD_NUMBER: _ClassVar[int]
    GET_HOLD_FIELD_NUMBER: _ClassVar[int]
    GET_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    SELL_FIELD_NUMBER: _ClassVar[int]
    APPLY_DEVICE_OPS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    put_sku: PutSkuRequest
    put_site: PutSiteRequest
    receive: ReceiveRequest
    move: MoveRequest
    change_status: ChangeStatusRequest
    reserve: ReserveRequest
    commit: CommitRequest
    release: ReleaseRequest
    consume: ConsumeRequest
    adjust: AdjustRequest
    get_hold: GetHoldRequest
    get_availability: GetAvailabilityRequest
    sell: SellRequest
    apply_device_ops: ApplyDeviceOpsRequest
    timeout_ms: int
    def __init__(self, put_sku: _Optional[_Union[PutSkuRequest, _Mapping]] = ..., put_site: _Optional[_Union[PutSiteRequest, _Mapping]] = ..., receive: _Optional[_Union[ReceiveRequest, _Mapping]] = ..., move: _Optional[_Union[MoveRequest, _Mapping]] = ..., change_status: _Optional[_Union[ChangeStatusRequest, _Mapping]] = ..., reserve: _Optional[_Union[ReserveRequest, _Mapping]] = ..., commit: _Optional[_Union[CommitRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., consume: _Optional[_Union[ConsumeRequest, _Mapping]] = ..., adjust: _Optional[_Union[AdjustRequest, _Mapping]] = ..., get_hold: _Optional[_Union[GetHoldRequest, _Mapping]] = ..., get_availability: _Optional[_Union[GetAvailabilityRequest, _Mapping]] = ..., sell: _Optional[_Union[SellRequest, _Mapping]] = ..., apply_device_ops: _Optional[_Union[ApplyDeviceOpsRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class CommandBatch(_message.Message):
    __slots__ = ("commands", "batch_id")
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    batch_id: int
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CommandError(_message.Message):
    __slots__ = ("code", "message", "reason", "domain", "metadata", "field_violations", "resource_type", "resource_name", "retry_delay_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    domain: str
    metadata: _containers.ScalarMap[str, str]
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    resource_type: str
    resource_name: str
    retry_delay_ms: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., domain: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., resource_type: _Optional[str] = ..., resource_name: _Optional[str] = ..., retry_delay_ms: _Optional[int] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("put_sku", "put_site", "receive", "move", "change_status", "reserve", "commit", "release", "consume", "adjust", "get_hold", "get_availability", "sell", "apply_device_ops", "error")
    PUT_SKU_FIELD_NUMBER: _ClassVar[int]
    PUT_SITE_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CONSUME_FIELD_NUMBER: _ClassVar[int]
    ADJUST_FIELD_NUMBER: _ClassVar[int]
    GET_HOLD_FIELD_NUMBER: _ClassVar[int]
    GET_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    SELL_FIELD_NUMBER: _ClassVar[int]
    APPLY_DEVICE_OPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    put_sku: PutSkuResponse
    put_site: PutSiteResponse
    receive: ReceiveResponse
    move: MoveResponse
    change_status: ChangeStatusResponse
    reserve: ReserveResponse
    commit: CommitResponse
    release: ReleaseResponse
    consume: ConsumeResponse
    adjust: AdjustResponse
    get_hold: GetHoldResponse
    get_availability: GetAvailabilityResponse
    sell: SellResponse
    apply_device_ops: ApplyDeviceOpsResponse
    error: CommandError
    def __init__(self, put_sku: _Optional[_Union[PutSkuResponse, _Mapping]] = ..., put_site: _Optional[_Union[PutSiteResponse, _Mapping]] = ..., receive: _Optional[_Union[ReceiveResponse, _Mapping]] = ..., move: _Optional[_Union[MoveResponse, _Mapping]] = ..., change_status: _Optional[_Union[ChangeStatusResponse, _Mapping]] = ..., reserve: _Optional[_Union[ReserveResponse, _Mapping]] = ..., commit: _Optional[_Union[CommitResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., consume: _Optional[_Union[ConsumeResponse, _Mapping]] = ..., adjust: _Optional[_Union[AdjustResponse, _Mapping]] = ..., get_hold: _Optional[_Union[GetHoldResponse, _Mapping]] = ..., get_availability: _Optional[_Union[GetAvailabilityResponse, _Mapping]] = ..., sell: _Optional[_Union[SellResponse, _Mapping]] = ..., apply_device_ops: _Optional[_Union[ApplyDeviceOpsResponse, _Mapping]] = ..., error: _Optional[_Union[CommandError, _Mapping]] = ...) -> None: ...

class ReplyBatch(_message.Message):
    __slots__ = ("replies", "batch_id")
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    batch_id: int
    def __init__(self, replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class CountLine(_message.Message):
    __slots__ = ("lot_id", "qty", "status", "owner", "expires_at_ms")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    qty: int
    status: str
    owner: str
    expires_at_ms: int
    def __init__(self, lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "bin", "lines", "whole_bin", "source", "confidence", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    WHOLE_BIN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    bin: str
    lines: _containers.RepeatedCompositeFieldContainer[CountLine]
    whole_bin: bool
    source: CountSource
    confidence: float
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., bin: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CountLine, _Mapping]]] = ..., whole_bin: _Optional[bool] = ..., source: _Optional[_Union[CountSource, str]] = ..., confidence: _Optional[float] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class HoldCut(_message.Message):
    __slots__ = ("hold_id", "lot_id", "bin", "status", "qty")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    lot_id: str
    bin: str
    status: str
    qty: int
    def __init__(self, hold_id: _Optional[str] = ..., lot_id: _Optional[str] = ..., bin: _Optional[str] = ..., status: _Optional[str] = ..., qty: _Optional[int] = ...) -> None: ...

class LotCount(_message.Message):
    __slots__ = ("lot_id", "previous_qty", "counted_qty")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_QTY_FIELD_NUMBER: _ClassVar[int]
    COUNTED_QTY_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    previous_qty: int
    counted_qty: int
    def __init__(self, lot_id: _Optional[str] = ..., previous_qty: _Optional[int] = ..., counted_qty: _Optional[int] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("lots", "holds_cut", "variance")
    LOTS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_CUT_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    lots: _containers.RepeatedCompositeFieldContainer[LotCount]
    holds_cut: _containers.RepeatedCompositeFieldContainer[HoldCut]
    variance: int
    def __init__(self, lots: _Optional[_Iterable[_Union[LotCount, _Mapping]]] = ..., holds_cut: _Optional[_Iterable[_Union[HoldCut, _Mapping]]] = ..., variance: _Optional[int] = ...) -> None: ...

class ExpireLotsRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ExpireLotsResponse(_message.Message):
    __slots__ = ("qty", "lot_ids", "holds_cut", "stuck_qty")
    QTY_FIELD_NUMBER: _ClassVar[int]
    LOT_IDS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_CUT_FIELD_NUMBER: _ClassVar[int]
    STUCK_QTY_FIELD_NUMBER: _ClassVar[int]
    qty: int
    lot_ids: _containers.RepeatedScalarFieldContainer[str]
    holds_cut: _containers.RepeatedCompositeFieldContainer[HoldCut]
    stuck_qty: int
    def __init__(self, qty: _Optional[int] = ..., lot_ids: _Optional[_Iterable[str]] = ..., holds_cut: _Optional[_Iterable[_Union[HoldCut, _Mapping]]] = ..., stuck_qty: _Optional[int] = ...) -> None: ...

class ScrapOverAgeRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class ScrapOverAgeResponse(_message.Message):
    __slots__ = ("qty", "lot_ids", "holds_cut")
    QTY_FIELD_NUMBER: _ClassVar[int]
    LOT_IDS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_CUT_FIELD_NUMBER: _ClassVar[int]
    qty: int
    lot_ids: _containers.RepeatedScalarFieldContainer[str]
    holds_cut: _containers.RepeatedCompositeFieldContainer[HoldCut]
    def __init__(self, qty: _Optional[int] = ..., lot_ids: _Optional[_Iterable[str]] = ..., holds_cut: _Optional[_Iterable[_Union[HoldCut, _Mapping]]] = ...) -> None: ...

class OpenLotRequest(_message.Message):
    __slots__ = ("request_id", "sku", "site", "lot_id", "opened_at_ms", "doc_ref", "finance")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    FINANCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sku: str
    site: str
    lot_id: str
    opened_at_ms: int
    doc_ref: str
    finance: Finance
    def __init__(self, request_id: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., lot_id: _Optional[str] = ..., opened_at_ms: _Optional[int] = ..., doc_ref: _Optional[str] = ..., finance: _Optional[_Union[Finance, _Mapping]] = ...) -> None: ...

class OpenLotResponse(_message.Message):
    __slots__ = ("lot_id", "opened_at_ms", "already_open", "fresh_until_ms")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_OPEN_FIELD_NUMBER: _ClassVar[int]
    FRESH_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    opened_at_ms: int
    already_open: bool
    fresh_until_ms: int
    def __init__(self, lot_id: _Optional[str] = ..., opened_at_ms: _Optional[int] = ..., already_open: _Optional[bool] = ..., fresh_until_ms: _Optional[int] = ...) -> None: ...

class DeviceOperation(_message.Message):
    __slots__ = ("seq", "at_ms", "receive", "consume", "count", "adjust", "move", "change_status", "prev_seq")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_FIELD_NUMBER: _ClassVar[int]
    CONSUME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ADJUST_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_STATUS_FIELD_NUMBER: _ClassVar[int]
    PREV_SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    receive: ReceiveRequest
    consume: ConsumeRequest
    count: CountRequest
    adjust: AdjustRequest
    move: MoveRequest
    change_status: ChangeStatusRequest
    prev_seq: int
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., receive: _Optional[_Union[ReceiveRequest, _Mapping]] = ..., consume: _Optional[_Union[ConsumeRequest, _Mapping]] = ..., count: _Optional[_Union[CountRequest, _Mapping]] = ..., adjust: _Optional[_Union[AdjustRequest, _Mapping]] = ..., move: _Optional[_Union[MoveRequest, _Mapping]] = ..., change_status: _Optional[_Union[ChangeStatusRequest, _Mapping]] = ..., prev_seq: _Optional[int] = ...) -> None: ...

class ApplyDeviceOpsRequest(_message.Message):
    __slots__ = ("device_id", "ops")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    ops: _containers.RepeatedCompositeFieldContainer[DeviceOperation]
    def __init__(self, device_id: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[DeviceOperation, _Mapping]]] = ...) -> None: ...

class DeviceOpResult(_message.Message):
    __slots__ = ("seq", "already_applied", "refusal_reason", "refusal_message")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ALREADY_APPLIED_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REASON_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    already_applied: bool
    refusal_reason: str
    refusal_message: str
    def __init__(self, seq: _Optional[int] = ..., already_applied: _Optional[bool] = ..., refusal_reason: _Optional[str] = ..., refusal_message: _Optional[str] = ...) -> None: ...

class ApplyDeviceOpsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeviceOpResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DeviceOpResult, _Mapping]]] = ...) -> None: ...
