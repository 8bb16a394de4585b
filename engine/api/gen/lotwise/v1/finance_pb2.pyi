from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VoucherLine(_message.Message):
    __slots__ = ("line_no", "role", "account", "account_name", "debit", "credit", "rule", "sku", "lot_id", "qty", "memo")
    LINE_NO_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_NAME_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    line_no: int
    role: str
    account: str
    account_name: str
    debit: str
    credit: str
    rule: str
    sku: str
    lot_id: str
    qty: int
    memo: str
    def __init__(self, line_no: _Optional[int] = ..., role: _Optional[str] = ..., account: _Optional[str] = ..., account_name: _Optional[str] = ..., debit: _Optional[str] = ..., credit: _Optional[str] = ..., rule: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., memo: _Optional[str] = ...) -> None: ...

class VoucherSource(_message.Message):
    __slots__ = ("event_id", "doc_ref", "sku", "site", "seq", "lot_id", "qty", "layer_ids", "movement")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_REF_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    LAYER_IDS_FIELD_NUMBER: _ClassVar[int]
    MOVEMENT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    doc_ref: str
    sku: str
    site: str
    seq: int
    lot_id: str
    qty: int
    layer_ids: _containers.RepeatedScalarFieldContainer[str]
    movement: str
    def __init__(self, event_id: _Optional[str] = ..., doc_ref: _Optional[str] = ..., sku: _Optional[str] = ..., site: _Optional[str] = ..., seq: _Optional[int] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., layer_ids: _Optional[_Iterable[str]] = ..., movement: _Optional[str] = ...) -> None: ...

class VoucherNote(_message.Message):
    __slots__ = ("author", "at_ms", "text")
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    author: str
    at_ms: int
    text: str
    def __init__(self, author: _Optional[str] = ..., at_ms: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class Voucher(_message.Message):
    __slots__ = ("voucher_id", "company", "kind", "at_ms", "currency", "lines", "sources", "summary", "preparer", "state", "reversal_of", "terms", "notes", "reviewer", "reason", "posted_at_ms", "version", "debit_total", "credit_total")
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PREPARER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_OF_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POSTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEBIT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    company: str
    kind: str
    at_ms: int
    currency: str
    lines: _containers.RepeatedCompositeFieldContainer[VoucherLine]
    sources: _containers.RepeatedCompositeFieldContainer[VoucherSource]
    summary: str
    preparer: str
    state: str
    reversal_of: str
    terms: str
    notes: _containers.RepeatedCompositeFieldContainer[VoucherNote]
    reviewer: str
    reason: str
    posted_at_ms: int
    version: int
    debit_total: str
    credit_total: str
    def __init__(self, voucher_id: _Optional[str] = ..., company: _Optional[str] = ..., kind: _Optional[str] = ..., at_ms: _Optional[int] = ..., currency: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[VoucherLine, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[VoucherSource, _Mapping]]] = ..., summary: _Optional[str] = ..., preparer: _Optional[str] = ..., state: _Optional[str] = ..., reversal_of: _Optional[str] = ..., terms: _Optional[str] = ..., notes: _Optional[_Iterable[_Union[VoucherNote, _Mapping]]] = ..., reviewer: _Optional[str] = ..., reason: _Optional[str] = ..., posted_at_ms: _Optional[int] = ..., version: _Optional[int] = ..., debit_total: _Optional[str] = ..., credit_total: _Optional[str] = ...) -> None: ...

class ListVouchersRequest(_message.Message):
    __slots__ = ("state", "company", "from_ms", "to_ms", "page_size", "page_token", "states")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    state: str
    company: str
    from_ms: int
    to_ms: int
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[str] = ..., company: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[str]] = ...) -> None: ...

class ListVouchersResponse(_message.Message):
    __slots__ = ("vouchers", "next_page_token")
    VOUCHERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    vouchers: _containers.RepeatedCompositeFieldContainer[Voucher]
    next_page_token: str
    def __init__(self, vouchers: _Optional[_Iterable[_Union[Voucher, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVoucherRequest(_message.Message):
    __slots__ = ("voucher_id",)
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    def __init__(self, voucher_id: _Optional[str] = ...) -> None: ...

class VoucherResponse(_message.Message):
    __slots__ = ("voucher",)
    VOUCHER_FIELD_NUMBER: _ClassVar[int]
    voucher: Voucher
    def __init__(self, voucher: _Optional[_Union[Voucher, _Mapping]] = ...) -> None: ...

class AnnotateVoucherRequest(_message.Message):
    __slots__ = ("voucher_id", "note")
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    note: str
    def __init__(self, voucher_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class VoucherActionRequest(_message.Message):
    __slots__ = ("voucher_id",)
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    def __init__(self, voucher_id: _Optional[str] = ...) -> None: ...

class RejectVoucherRequest(_message.Message):
    __slots__ = ("voucher_id", "reason")
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    reason: str
    def __init__(self, voucher_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TraceRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class TraceResponse(_message.Message):
    __slots__ = ("vouchers", "sources")
    VOUCHERS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    vouchers: _containers.RepeatedCompositeFieldContainer[Voucher]
    sources: _containers.RepeatedCompositeFieldContainer[VoucherSource]
    def __init__(self, vouchers: _Optional[_Iterable[_Union[Voucher, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[VoucherSource, _Mapping]]] = ...) -> None: ...

class GetValuationRequest(_message.Message):
    __slots__ = ("company", "sku", "lot_id", "as_of_ms")
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    company: str
    sku: str
    lot_id: str
    as_of_ms: int
    def __init__(self, company: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

class LotValuation(_message.Message):
    __slots__ = ("company", "sku", "lot_id", "qty", "value", "unit_cost")
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_COST_FIELD_NUMBER: _ClassVar[int]
    company: str
    sku: str
    lot_id: str
    qty: int
    value: str
    unit_cost: str
    def __init__(self, company: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., qty: _Optional[int] = ..., value: _Optional[str] = ..., unit_cost: _Optional[str] = ...) -> None: ...

class GetValuationResponse(_message.Message):
    __slots__ = ("lots", "total_value")
    LOTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    lots: _containers.RepeatedCompositeFieldContainer[LotValuation]
    total_value: str
    def __init__(self, lots: _Optional[_Iterable[_Union[LotValuation, _Mapping]]] = ..., total_value: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ExplainStep(_message.Message):
    __slots__ = ("position", "rule", "account", "mismatch")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MISMATCH_FIELD_NUMBER: _ClassVar[int]
    position: int
    rule: str
    account: str
    mismatch: str
    def __init__(self, position: _Optional[int] = ..., rule: _Optional[str] = ..., account: _Optional[str] = ..., mismatch: _Optional[str] = ...) -> None: ...

class ExplainedLine(_message.Message):
    __slots__ = ("voucher_id", "line_no", "facts", "steps")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VOUCHER_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_NO_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    voucher_id: str
    line_no: int
    facts: _containers.ScalarMap[str, str]
    steps: _containers.RepeatedCompositeFieldContainer[ExplainStep]
    def __init__(self, voucher_id: _Optional[str] = ..., line_no: _Optional[int] = ..., facts: _Optional[_Mapping[str, str]] = ..., steps: _Optional[_Iterable[_Union[ExplainStep, _Mapping]]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("lines", "rules_source")
    LINES_FIELD_NUMBER: _ClassVar[int]
    RULES_SOURCE_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[ExplainedLine]
    rules_source: str
    def __init__(self, lines: _Optional[_Iterable[_Union[ExplainedLine, _Mapping]]] = ..., rules_source: _Optional[str] = ...) -> None: ...

class RecordSupplierInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "company", "receipt_docs", "net", "tax", "terms", "at_ms")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_DOCS_FIELD_NUMBER: _ClassVar[int]
    NET_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    company: str
    receipt_docs: _containers.RepeatedScalarFieldContainer[str]
    net: str
    tax: str
    terms: str
    at_ms: int
    def __init__(self, invoice_id: _Optional[str] = ..., company: _Optional[str] = ..., receipt_docs: _Optional[_Iterable[str]] = ..., net: _Optional[str] = ..., tax: _Optional[str] = ..., terms: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class RecordLandedCostRequest(_message.Message):
    __slots__ = ("cost_id", "company", "sku", "lot_id", "amount", "at_ms")
    COST_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    cost_id: str
    company: str
    sku: str
    lot_id: str
    amount: str
    at_ms: int
    def __init__(self, cost_id: _Optional[str] = ..., company: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ..., amount: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class RecordBaselineRequest(_message.Message):
    __slots__ = ("doc", "baseline", "at_ms")
    DOC_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    doc: str
    baseline: str
    at_ms: int
    def __init__(self, doc: _Optional[str] = ..., baseline: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class RecordBaselineResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPaymentPlansRequest(_message.Message):
    __slots__ = ("company",)
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    company: str
    def __init__(self, company: _Optional[str] = ...) -> None: ...

class PaymentPlan(_message.Message):
    __slots__ = ("doc", "direction", "terms", "baseline", "baseline_date", "discount_deadline", "due_date", "gross", "discount", "net_if_discounted", "waiting_for")
    DOC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_DATE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    GROSS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    NET_IF_DISCOUNTED_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    doc: str
    direction: str
    terms: str
    baseline: str
    baseline_date: str
    discount_deadline: str
    due_date: str
    gross: str
    discount: str
    net_if_discounted: str
    waiting_for: str
    def __init__(self, doc: _Optional[str] = ..., direction: _Optional[str] = ..., terms: _Optional[str] = ..., baseline: _Optional[str] = ..., baseline_date: _Optional[str] = ..., discount_deadline: _Optional[str] = ..., due_date: _Optional[str] = ..., gross: _Optional[str] = ..., discount: _Optional[str] = ..., net_if_discounted: _Optional[str] = ..., waiting_for: _Optional[str] = ...) -> None: ...

class CashDay(_message.Message):
    __slots__ = ("day", "receivable", "payable")
    DAY_FIELD_NUMBER: _ClassVar[int]
    RECEIVABLE_FIELD_NUMBER: _ClassVar[int]
    PAYABLE_FIELD_NUMBER: _ClassVar[int]
    day: str
    receivable: str
    payable: str
    def __init__(self, day: _Optional[str] = ..., receivable: _Optional[str] = ..., payable: _Optional[str] = ...) -> None: ...

class GetPaymentPlansResponse(_message.Message):
    __slots__ = ("plans", "cash_flow")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    CASH_FLOW_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[PaymentPlan]
    cash_flow: _containers.RepeatedCompositeFieldContainer[CashDay]
    def __init__(self, plans: _Optional[_Iterable[_Union[PaymentPlan, _Mapping]]] = ..., cash_flow: _Optional[_Iterable[_Union[CashDay, _Mapping]]] = ...) -> None: ...

class ExportVouchersRequest(_message.Message):
    __slots__ = ("batch_id", "profile", "company")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    profile: str
    company: str
    def __init__(self, batch_id: _Optional[str] = ..., profile: _Optional[str] = ..., company: _Optional[str] = ...) -> None: ...

class ExportVouchersResponse(_message.Message):
    __slots__ = ("batch_id", "file_name", "content", "voucher_ids", "created_at_ms")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VOUCHER_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    file_name: str
    content: bytes
    voucher_ids: _containers.RepeatedScalarFieldContainer[str]
    created_at_ms: int
    def __init__(self, batch_id: _Optional[str] = ..., file_name: _Optional[str] = ..., content: _Optional[bytes] = ..., voucher_ids: _Optional[_Iterable[str]] = ..., created_at_ms: _Optional[int] = ...) -> None: ...
