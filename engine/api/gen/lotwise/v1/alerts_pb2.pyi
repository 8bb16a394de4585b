from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertScope(_message.Message):
    __slots__ = ("org", "site", "bin", "sku", "lot_id")
    ORG_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    org: str
    site: str
    bin: str
    sku: str
    lot_id: str
    def __init__(self, org: _Optional[str] = ..., site: _Optional[str] = ..., bin: _Optional[str] = ..., sku: _Optional[str] = ..., lot_id: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "kind", "severity", "scope", "subject", "state", "summary", "count", "opened_at_ms", "last_seen_ms", "evidence", "acknowledged_by", "acknowledged_at_ms", "closed_by", "closed_at_ms", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_BY_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: str
    severity: str
    scope: AlertScope
    subject: str
    state: str
    summary: str
    count: int
    opened_at_ms: int
    last_seen_ms: int
    evidence: _containers.RepeatedScalarFieldContainer[str]
    acknowledged_by: str
    acknowledged_at_ms: int
    closed_by: str
    closed_at_ms: int
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[str] = ..., severity: _Optional[str] = ..., scope: _Optional[_Union[AlertScope, _Mapping]] = ..., subject: _Optional[str] = ..., state: _Optional[str] = ..., summary: _Optional[str] = ..., count: _Optional[int] = ..., opened_at_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., evidence: _Optional[_Iterable[str]] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_at_ms: _Optional[int] = ..., closed_by: _Optional[str] = ..., closed_at_ms: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("kinds", "states", "site", "min_severity", "limit")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    states: _containers.RepeatedScalarFieldContainer[str]
    site: str
    min_severity: str
    limit: int
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., states: _Optional[_Iterable[str]] = ..., site: _Optional[str] = ..., min_severity: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class AlertActionRequest(_message.Message):
    __slots__ = ("alert_id", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class GetAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class AlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...
