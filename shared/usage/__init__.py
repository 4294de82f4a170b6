"""Usage and cost: prices and token estimates, the usage ledger, the cost report.

    pricing.Price, cost_usd, estimate_tokens, estimate_prompt_tokens
    ledger.UsageRecord, UsageLedger (protocol), MemoryLedger, TableLedger
    report.cost_report, parse_report_query, ReportQuery

The Azure Tables SDK is imported only when a TableLedger first touches the store.
"""

from __future__ import annotations

from .ledger import LedgerUnavailable, MemoryLedger, TableLedger, UsageLedger, UsageRecord
from .pricing import Price, cost_usd, estimate_prompt_tokens, estimate_tokens
from .report import GROUP_BY_VALUES, ReportQuery, cost_report, parse_report_query

__all__ = [
    "GROUP_BY_VALUES",
    "LedgerUnavailable",
    "MemoryLedger",
    "Price",
    "ReportQuery",
    "TableLedger",
    "UsageLedger",
    "UsageRecord",
    "cost_report",
    "cost_usd",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "parse_report_query",
]
