from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeadTime(_message.Message):
    __slots__ = ("days", "received_at_ms")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    days: float
    received_at_ms: int
    def __init__(self, days: _Optional[float] = ..., received_at_ms: _Optional[int] = ...) -> None: ...

class AppliedFactor(_message.Message):
    __slots__ = ("kind", "multiplier", "source")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    multiplier: float
    source: str
    def __init__(self, kind: _Optional[str] = ..., multiplier: _Optional[float] = ..., source: _Optional[str] = ...) -> None: ...

class RuleLine(_message.Message):
    __slots__ = ("rule", "kind", "field", "before", "after", "note")
    RULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    rule: str
    kind: str
    field: str
    before: str
    after: str
    note: str
    def __init__(self, rule: _Optional[str] = ..., kind: _Optional[str] = ..., field: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class Panel(_message.Message):
    __slots__ = ("mean_7d", "mean_14d", "mean_30d", "daily_demand", "method", "demand_class", "lead_times", "lead_time_days", "lead_time_sigma_days", "review_days", "on_hand", "held", "in_transit_within", "in_transit_beyond", "open_todos", "inventory_position", "moq", "multiple", "service_level", "z", "sigma_ltd", "safety_stock", "reorder_point", "order_up_to", "factors", "raw_qty", "final_qty", "coverage_days", "health_flags", "censored_days", "demand_rate", "buffer", "seasonal_index", "factor_multiplier", "reason", "spikes_stripped")
    MEAN_7D_FIELD_NUMBER: _ClassVar[int]
    MEAN_14D_FIELD_NUMBER: _ClassVar[int]
    MEAN_30D_FIELD_NUMBER: _ClassVar[int]
    DAILY_DEMAND_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DEMAND_CLASS_FIELD_NUMBER: _ClassVar[int]
    LEAD_TIMES_FIELD_NUMBER: _ClassVar[int]
    LEAD_TIME_DAYS_FIELD_NUMBER: _ClassVar[int]
    LEAD_TIME_SIGMA_DAYS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_DAYS_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    IN_TRANSIT_WITHIN_FIELD_NUMBER: _ClassVar[int]
    IN_TRANSIT_BEYOND_FIELD_NUMBER: _ClassVar[int]
    OPEN_TODOS_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_POSITION_FIELD_NUMBER: _ClassVar[int]
    MOQ_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    SIGMA_LTD_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    ORDER_UP_TO_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    RAW_QTY_FIELD_NUMBER: _ClassVar[int]
    FINAL_QTY_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FLAGS_FIELD_NUMBER: _ClassVar[int]
    CENSORED_DAYS_FIELD_NUMBER: _ClassVar[int]
    DEMAND_RATE_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    SEASONAL_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACTOR_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPIKES_STRIPPED_FIELD_NUMBER: _ClassVar[int]
    mean_7d: float
    mean_14d: float
    mean_30d: float
    daily_demand: float
    method: str
    demand_class: str
    lead_times: _containers.RepeatedCompositeFieldContainer[LeadTime]
    lead_time_days: float
    lead_time_sigma_days: float
    review_days: float
    on_hand: int
    held: int
    in_transit_within: int
    in_transit_beyond: int
    open_todos: int
    inventory_position: int
    moq: int
    multiple: int
    service_level: float
    z: float
    sigma_ltd: float
    safety_stock: float
    reorder_point: float
    order_up_to: float
    factors: _containers.RepeatedCompositeFieldContainer[AppliedFactor]
    raw_qty: int
    final_qty: int
    coverage_days: float
    health_flags: _containers.RepeatedScalarFieldContainer[str]
    censored_days: int
    demand_rate: float
    buffer: float
    seasonal_index: float
    factor_multiplier: float
    reason: str
    spikes_stripped: int
    def __init__(self, mean_7d: _Optional[float] = ..., mean_14d: _Optional[float] = ..., mean_30d: _Optional[float] = ..., daily_demand: _Optional[float] = ..., method: _Optional[str] = ..., demand_class: _Optional[str] = ..., lead_times: _Optional[_Iterable[_Union[LeadTime, _Mapping]]] = ..., lead_time_days: _Optional[float] = ..., lead_time_sigma_days: _Optional[float] = ..., review_days: _Optional[float] = ..., on_hand: _Optional[int] = ..., held: _Optional[int] = ..., in_transit_within: _Optional[int] = ..., in_transit_beyond: _Optional[int] = ..., open_todos: _Optional[int] = ..., inventory_position: _Optional[int] = ..., moq: _Optional[int] = ..., multiple: _Optional[int] = ..., service_level: _Optional[float] = ..., z: _Optional[float] = ..., sigma_ltd: _Optional[float] = ..., safety_stock: _Optional[float] = ..., reorder_point: _Optional[float] = ..., order_up_to: _Optional[float] = ..., factors: _Optional[_Iterable[_Union[AppliedFactor, _Mapping]]] = ..., raw_qty: _Optional[int] = ..., final_qty: _Optional[int] = ..., coverage_days: _Optional[float] = ..., health_flags: _Optional[_Iterable[str]] = ..., censored_days: _Optional[int] = ..., demand_rate: _Optional[float] = ..., buffer: _Optional[float] = ..., seasonal_index: _Optional[float] = ..., factor_multiplier: _Optional[float] = ..., reason: _Optional[str] = ..., spikes_stripped: _Optional[int] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("sku", "site", "version", "state", "qty", "decided_qty", "flagged", "supplier", "reason", "decided_by", "created_at_ms", "decided_at_ms", "trigger", "panel", "trace", "below_reorder_point", "automatic")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_QTY_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    PANEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    BELOW_REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    version: int
    state: str
    qty: int
    decided_qty: int
    flagged: bool
    supplier: str
    reason: str
    decided_by: str
    created_at_ms: int
    decided_at_ms: int
    trigger: str
    panel: Panel
    trace: _containers.RepeatedCompositeFieldContainer[RuleLine]
    below_reorder_point: bool
    automatic: bool
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[str] = ..., qty: _Optional[int] = ..., decided_qty: _Optional[int] = ..., flagged: _Optional[bool] = ..., supplier: _Optional[str] = ..., reason: _Optional[str] = ..., decided_by: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., decided_at_ms: _Optional[int] = ..., trigger: _Optional[str] = ..., panel: _Optional[_Union[Panel, _Mapping]] = ..., trace: _Optional[_Iterable[_Union[RuleLine, _Mapping]]] = ..., below_reorder_point: _Optional[bool] = ..., automatic: _Optional[bool] = ...) -> None: ...

class SuggestionRef(_message.Message):
    __slots__ = ("sku", "site")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class SuggestionResponse(_message.Message):
    __slots__ = ("suggestion",)
    SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    suggestion: Suggestion
    def __init__(self, suggestion: _Optional[_Union[Suggestion, _Mapping]] = ...) -> None: ...

class ListSuggestionsRequest(_message.Message):
    __slots__ = ("site", "sku", "org_prefix", "flagged_only", "state", "page_size", "page_token", "open_only")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    ORG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_ONLY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    org_prefix: str
    flagged_only: bool
    state: str
    page_size: int
    page_token: str
    open_only: bool
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ..., org_prefix: _Optional[str] = ..., flagged_only: _Optional[bool] = ..., state: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., open_only: _Optional[bool] = ...) -> None: ...

class ListSuggestionsResponse(_message.Message):
    __slots__ = ("suggestions", "next_page_token")
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[Suggestion]
    next_page_token: str
    def __init__(self, suggestions: _Optional[_Iterable[_Union[Suggestion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DecideSuggestionRequest(_message.Message):
    __slots__ = ("sku", "site", "version", "reason")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    version: int
    reason: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class OverrideSuggestionRequest(_message.Message):
    __slots__ = ("sku", "site", "version", "qty", "reason")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    version: int
    qty: int
    reason: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., version: _Optional[int] = ..., qty: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class AdoptionRow(_message.Message):
    __slots__ = ("key", "decided", "accepted", "overridden", "rejected", "acceptance_rate", "override_rate")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_RATE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_RATE_FIELD_NUMBER: _ClassVar[int]
    key: str
    decided: int
    accepted: int
    overridden: int
    rejected: int
    acceptance_rate: float
    override_rate: float
    def __init__(self, key: _Optional[str] = ..., decided: _Optional[int] = ..., accepted: _Optional[int] = ..., overridden: _Optional[int] = ..., rejected: _Optional[int] = ..., acceptance_rate: _Optional[float] = ..., override_rate: _Optional[float] = ...) -> None: ...

class GetAdoptionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAdoptionResponse(_message.Message):
    __slots__ = ("by_planner", "by_rule", "total")
    BY_PLANNER_FIELD_NUMBER: _ClassVar[int]
    BY_RULE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    by_planner: _containers.RepeatedCompositeFieldContainer[AdoptionRow]
    by_rule: _containers.RepeatedCompositeFieldContainer[AdoptionRow]
    total: AdoptionRow
    def __init__(self, by_planner: _Optional[_Iterable[_Union[AdoptionRow, _Mapping]]] = ..., by_rule: _Optional[_Iterable[_Union[AdoptionRow, _Mapping]]] = ..., total: _Optional[_Union[AdoptionRow, _Mapping]] = ...) -> None: ...

class Supplier(_message.Message):
    __slots__ = ("sku", "site", "supplier", "moq", "multiple", "order_weekdays", "lead_times", "auto_order", "keeper", "shelf_life_days", "service_level", "stated_lead_time_days")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    MOQ_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    ORDER_WEEKDAYS_FIELD_NUMBER: _ClassVar[int]
    LEAD_TIMES_FIELD_NUMBER: _ClassVar[int]
    AUTO_ORDER_FIELD_NUMBER: _ClassVar[int]
    KEEPER_FIELD_NUMBER: _ClassVar[int]
    SHELF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    STATED_LEAD_TIME_DAYS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    supplier: str
    moq: int
    multiple: int
    order_weekdays: _containers.RepeatedScalarFieldContainer[int]
    lead_times: _containers.RepeatedCompositeFieldContainer[LeadTime]
    auto_order: bool
    keeper: str
    shelf_life_days: int
    service_level: float
    stated_lead_time_days: float
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ..., supplier: _Optional[str] = ..., moq: _Optional[int] = ..., multiple: _Optional[int] = ..., order_weekdays: _Optional[_Iterable[int]] = ..., lead_times: _Optional[_Iterable[_Union[LeadTime, _Mapping]]] = ..., auto_order: _Optional[bool] = ..., keeper: _Optional[str] = ..., shelf_life_days: _Optional[int] = ..., service_level: _Optional[float] = ..., stated_lead_time_days: _Optional[float] = ...) -> None: ...

class PutSupplierRequest(_message.Message):
    __slots__ = ("supplier",)
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    supplier: Supplier
    def __init__(self, supplier: _Optional[_Union[Supplier, _Mapping]] = ...) -> None: ...

class SupplierResponse(_message.Message):
    __slots__ = ("supplier",)
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    supplier: Supplier
    def __init__(self, supplier: _Optional[_Union[Supplier, _Mapping]] = ...) -> None: ...

class GetSupplierRequest(_message.Message):
    __slots__ = ("sku", "site")
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    site: str
    def __init__(self, sku: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class ListSuppliersRequest(_message.Message):
    __slots__ = ("site", "supplier", "page_size", "page_token")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    site: str
    supplier: str
    page_size: int
    page_token: str
    def __init__(self, site: _Optional[str] = ..., supplier: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSuppliersResponse(_message.Message):
    __slots__ = ("suppliers", "next_page_token")
    SUPPLIERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    suppliers: _containers.RepeatedCompositeFieldContainer[Supplier]
    next_page_token: str
    def __init__(self, suppliers: _Optional[_Iterable[_Union[Supplier, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PairHealth(_message.Message):
    __slots__ = ("site", "sku", "documents", "documents_complete", "completeness", "returns", "returns_matched", "returns_matched_ratio", "lots", "lots_missing_expiry", "gifts", "gifts_without_tax", "ok", "problems")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    RETURNS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    RETURNS_MATCHED_RATIO_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    LOTS_MISSING_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    GIFTS_FIELD_NUMBER: _ClassVar[int]
    GIFTS_WITHOUT_TAX_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    documents: int
    documents_complete: int
    completeness: float
    returns: int
    returns_matched: int
    returns_matched_ratio: float
    lots: int
    lots_missing_expiry: int
    gifts: int
    gifts_without_tax: int
    ok: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ..., documents: _Optional[int] = ..., documents_complete: _Optional[int] = ..., completeness: _Optional[float] = ..., returns: _Optional[int] = ..., returns_matched: _Optional[int] = ..., returns_matched_ratio: _Optional[float] = ..., lots: _Optional[int] = ..., lots_missing_expiry: _Optional[int] = ..., gifts: _Optional[int] = ..., gifts_without_tax: _Optional[int] = ..., ok: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDataHealthRequest(_message.Message):
    __slots__ = ("site", "sku")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    site: str
    sku: str
    def __init__(self, site: _Optional[str] = ..., sku: _Optional[str] = ...) -> None: ...

class GetDataHealthResponse(_message.Message):
    __slots__ = ("pairs", "min_completeness", "min_returns_matched")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    MIN_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    MIN_RETURNS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[PairHealth]
    min_completeness: float
    min_returns_matched: float
    def __init__(self, pairs: _Optional[_Iterable[_Union[PairHealth, _Mapping]]] = ..., min_completeness: _Optional[float] = ..., min_returns_matched: _Optional[float] = ...) -> None: ...

class RecomputeAllRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecomputeAllResponse(_message.Message):
    __slots__ = ("pairs", "suggestions_changed", "below_reorder_point", "duration_ms")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    BELOW_REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    pairs: int
    suggestions_changed: int
    below_reorder_point: int
    duration_ms: float
    def __init__(self, pairs: _Optional[int] = ..., suggestions_changed: _Optional[int] = ..., below_reorder_point: _Optional[int] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class Factor(_message.Message):
    __slots__ = ("factor_id", "kind", "sku", "site", "from_day", "to_day", "multiplier", "source")
    FACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    FROM_DAY_FIELD_NUMBER: _ClassVar[int]
    TO_DAY_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    factor_id: str
    kind: str
    sku: str
    site: str
    from_day: str
    to_day: str
    multiplier: float
    source: str
    def __init__(self, factor_id: _Optional[str] = ..., kind: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., from_day: _Optional[str] = ..., to_day: _Optional[str] = ..., multiplier: _Optional[float] = ..., source: _Optional[str] = ...) -> None: ...

class PutFactorsRequest(_message.Message):
    __slots__ = ("factors",)
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    factors: _containers.RepeatedCompositeFieldContainer[Factor]
    def __init__(self, factors: _Optional[_Iterable[_Union[Factor, _Mapping]]] = ...) -> None: ...

class PutFactorsResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...
