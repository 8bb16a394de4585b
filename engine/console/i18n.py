"""Labels in English and Chinese, and numbers and dates in the reader's locale.

Labels are data (one table per language, the same keys in each: a unit test checks it);
numbers and dates go through Babel's CLDR data, so 1234567 reads `1,234,567` in both and a
date reads `Dec 7, 2026` or `2026年12月7日`. Times are UTC, as everywhere in Lotwise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Literal

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, get_group_symbol

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")
DEFAULT_LANG: Lang = "en"
_LOCALE = {"en": "en_US", "zh": "zh_Hans_CN"}

LABELS: dict[Lang, dict[str, str]] = {
    "en": {
        "title": "Lotwise console",
        "lang_name": "English",
        "lang_other": "中文",
        "nav_stock": "Stock",
        "nav_history": "Movements",
        "nav_charts": "Charts",
        "nav_deadletters": "Dead letters",
        "nav_transfers": "Transfers",
        "nav_alerts": "Alerts",
        "alerts": "Alerts",
        "severity": "Severity",
        "summary": "Summary",
        "count": "Times",
        "last_seen": "Last seen",
        "acknowledge": "Acknowledge",
        "close": "Close",
        "state": "State",
        "transfers": "Transfers",
        "transfer": "Transfer",
        "from_site": "From",
        "to_site": "To",
        "requested_by": "Requested by",
        "requested_at": "Requested at",
        "in_state_h": "Hours in state",
        "approve": "Approve",
        "reject": "Reject",
        "note": "note",
        "now": "now",
        "signed_in_as": "Signed in as",
        "sign_out": "Sign out",
        "sign_in": "Sign in",
        "token": "Access token",
        "token_hint": "Paste a token: the admin token file `lotwise up` wrote, or any token issued to you.",
        "login_failed": "That token was not accepted",
        "stock_explorer": "Stock explorer",
        "sites": "Sites",
        "org": "Org node",
        "site": "Site",
        "sku": "SKU",
        "bin": "Bin",
        "status": "Status",
        "owner": "Owner",
        "lot": "Lot",
        "expiry_day": "Expiry day",
        "received_day": "Received day",
        "group_by": "Group by",
        "by_sku": "per SKU",
        "by_site": "per site",
        "bin_prefix": "Bin prefix",
        "bin_depth": "Bin levels",
        "min_shelf_life_days": "Min shelf life (days)",
        "max_shelf_life_days": "Max shelf life (days)",
        "sellable_only": "Sellable only",
        "apply": "Apply",
        "qty": "Quantity",
        "held": "Held",
        "available": "Available",
        "on_hand": "On hand",
        "earliest_expiry": "Earliest expiry",
        "total": "Total",
        "rows": "rows",
        "no_rows": "Nothing matches.",
        "org_rollup": "Org roll-up",
        "rollup_at": "totals as of",
        "all": "All",
        "drill": "open",
        "movements": "Movements",
        "as_of": "Balance as of",
        "as_of_hint": "Slide to see the balance at an earlier time.",
        "trace_lot": "Trace a lot",
        "trace": "Trace",
        "stops": "Stops",
        "documents": "Documents",
        "qty_in": "In",
        "qty_out": "Out",
        "balance": "Balance",
        "first_at": "First",
        "last_at": "Last",
        "kind": "Kind",
        "at": "At",
        "from": "From",
        "to": "To",
        "doc_ref": "Document",
        "search": "Search",
        "consumption": "Daily consumption",
        "days": "Days",
        "expiry_exposure": "Expiry exposure",
        "days_left": "Days left",
        "expired": "expired",
        "horizon_days": "Horizon (days)",
        "lots": "Lots",
        "dead_letters": "Dead letters",
        "seq": "Seq",
        "code": "Code",
        "reason": "Reason",
        "event_type": "Event",
        "subject": "Subject",
        "failed_at": "Failed at",
        "deliveries": "Deliveries",
        "payload": "Payload",
        "headers": "Headers",
        "replay": "Replay",
        "replayed": "Replayed",
        "replay_failed": "Not replayed",
        "show": "Show",
        "back": "Back",
        "error": "The engine refused",
        "bad_input": "Check the form",
        "not_allowed": "Your grants do not cover this.",
        "in_store": "in the store",
        "next_page": "Next page",
    },
    "zh": {
        "title": "Lotwise 控制台",
        "lang_name": "中文",
        "lang_other": "English",
        "nav_stock": "库存",
        "nav_history": "库存流水",
        "nav_charts": "图表",
        "nav_deadletters": "死信",
        "nav_transfers": "调拨",
        "nav_alerts": "告警",
        "alerts": "告警",
        "severity": "级别",
        "summary": "摘要",
        "count": "次数",
        "last_seen": "最近一次",
        "acknowledge": "确认",
        "close": "关闭",
        "state": "状态",
        "transfers": "调拨单",
        "transfer": "调拨单",
        "from_site": "调出",
        "to_site": "调入",
        "requested_by": "申请人",
        "requested_at": "申请时间",
        "in_state_h": "当前状态时长(小时)",
        "approve": "批准",
        "reject": "驳回",
        "note": "备注",
        "now": "现为",
        "signed_in_as": "当前用户",
        "sign_out": "退出",
        "sign_in": "登录",
        "token": "访问令牌",
        "token_hint": "粘贴令牌：`lotwise up` 写出的管理员令牌文件，或发给你的任何令牌。",
        "login_failed": "令牌未被接受",
        "stock_explorer": "库存浏览",
        "sites": "站点",
        "org": "组织节点",
        "site": "站点",
        "sku": "商品编码",
        "bin": "库位",
        "status": "状态",
        "owner": "货权",
        "lot": "批次",
        "expiry_day": "到期日",
        "received_day": "入库日",
        "group_by": "分组",
        "by_sku": "按商品",
        "by_site": "按站点",
        "bin_prefix": "库位前缀",
        "bin_depth": "库位层级",
        "min_shelf_life_days": "最短剩余保质期（天）",
        "max_shelf_life_days": "最长剩余保质期（天）",
        "sellable_only": "仅可售",
        "apply": "查询",
        "qty": "数量",
        "held": "已锁定",
        "available": "可用",
        "on_hand": "在库",
        "earliest_expiry": "最早到期",
        "total": "合计",
        "rows": "行",
        "no_rows": "没有匹配的数据。",
        "org_rollup": "组织汇总",
        "rollup_at": "汇总时间",
        "all": "全部",
        "drill": "展开",
        "movements": "库存流水",
        "as_of": "历史时点余额",
        "as_of_hint": "拖动滑块查看更早时间的余额。",
        "trace_lot": "批次追溯",
        "trace": "追溯",
        "stops": "经过的站点",
        "documents": "单据",
        "qty_in": "入",
        "qty_out": "出",
        "balance": "余额",
        "first_at": "首次",
        "last_at": "最后",
        "kind": "类型",
        "at": "时间",
        "from": "从",
        "to": "到",
        "doc_ref": "单据号",
        "search": "搜索",
        "consumption": "每日消耗",
        "days": "天数",
        "expiry_exposure": "效期风险",
        "days_left": "剩余天数",
        "expired": "已过期",
        "horizon_days": "范围（天）",
        "lots": "批次数",
        "dead_letters": "死信",
        "seq": "序号",
        "code": "代码",
        "reason": "原因",
        "event_type": "事件",
        "subject": "主题",
        "failed_at": "失败时间",
        "deliveries": "投递次数",
        "payload": "内容",
        "headers": "消息头",
        "replay": "重放",
        "replayed": "已重放",
        "replay_failed": "未重放",
        "show": "查看",
        "back": "返回",
        "error": "引擎拒绝了请求",
        "bad_input": "请检查表单",
        "not_allowed": "你的权限不包括此内容。",
        "in_store": "条在库",
        "next_page": "下一页",
    },
}


def lang_of(value: str | None) -> Lang:
    """A supported language from a cookie or a query value; anything else is the default."""
    return value if value in LANGS else DEFAULT_LANG


class Translator:
    """What a template needs for one language: labels, numbers, dates."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self.labels = LABELS[lang]
        self._locale = _LOCALE[lang]
        self._group = get_group_symbol(self._locale)

    def __call__(self, key: str) -> str:
        # A missing label shows its key: visible in review, never a crash on a page.
        return self.labels.get(key, key)

    def number(self, value: float) -> str:
        if isinstance(value, int):
            # Quantities are integers: both locales group by three, so only the symbols differ.
            # (Babel's general path costs ~10 µs a number: a stock page shows thousands.)
            return f"{value:,}".replace(",", self._group)
        return format_decimal(value, locale=self._locale)

    def day(self, ms: int) -> str:
        """A UTC date; "" for 0 (never / not set)."""
        if not ms:
            return ""
        return _medium_day(datetime.fromtimestamp(ms / 1000, UTC).date(), self._locale)

    def iso_day(self, iso: str) -> str:
        """An ISO `YYYY-MM-DD` day as the locale writes it; "" stays ""."""
        if not iso:
            return ""
        return _medium_day(datetime.fromisoformat(iso).date(), self._locale)

    def time(self, ms: int) -> str:
        """A UTC date and time; "" for 0."""
        if not ms:
            return ""
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        return format_datetime(moment, format="medium", tzinfo=UTC, locale=self._locale) + " UTC"


@lru_cache(maxsize=4096)
def _medium_day(day: date, locale: str) -> str:
    """A page shows the same few days many times (expiry columns): format each once."""
    return format_date(day, format="medium", locale=locale)
