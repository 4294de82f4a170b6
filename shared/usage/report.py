"""The cost report behind `GET /api/routing/costs?from=&to=&group_by=`.

`parse_report_query` turns query parameters into a validated UTC range [start, end)
and a grouping; `cost_report` sums usage records per group and compares their cost
with what the same tokens would have cost on a single baseline model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Iterable, Literal, Mapping

from shared.errors import InvalidRequest

from .ledger import UsageRecord
from .pricing import Price, cost_usd

__all__ = ["DEFAULT_RANGE_DAYS", "GROUP_BY_VALUES", "ReportQuery", "cost_report", "parse_report_query"]

GroupBy = Literal["provider", "model", "task_type", "day"]
GROUP_BY_VALUES: tuple[str, ...] = ("provider", "model", "task_type", "day")
DEFAULT_RANGE_DAYS = 7
USD_DIGITS = 6


@dataclass(frozen=True)
class ReportQuery:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    group_by: GroupBy


def parse_report_query(params: Mapping[str, str], now: datetime, max_range_days: int = 92) -> ReportQuery:
    """Validate `from`, `to` and `group_by`.

    `from`/`to` are ISO dates (`2025-03-01`) or datetimes (`2025-03-01T12:00:00Z`); a
    datetime without an offset is UTC. A `to` date includes that whole day. Defaults:
    `to` = now, `from` = `to` minus 7 days; `group_by` = provider.
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    group_by = (params.get("group_by") or "provider").strip()
    if group_by not in GROUP_BY_VALUES:
        raise InvalidRequest(
            f"group_by must be one of {', '.join(GROUP_BY_VALUES)}; got {_quote(group_by)}", param="group_by"
        )
    end = _parse_bound(params.get("to"), "to") or now
    start = _parse_bound(params.get("from"), "from") or end - timedelta(days=DEFAULT_RANGE_DAYS)
    if start > end:
        raise InvalidRequest(f"from ({start.isoformat()}) is after to ({end.isoformat()})", param="from")
    if end - start > timedelta(days=max_range_days):
        raise InvalidRequest(
            f"the range from {start.isoformat()} to {end.isoformat()} is longer than the maximum of "
            f"{max_range_days} days",
            param="to",
        )
    return ReportQuery(start=start, end=end, group_by=group_by)  # type: ignore[arg-type]


def _parse_bound(raw: str | None, param: str) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if len(text) <= 10 and "T" not in text and " " not in text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            start_of_day = datetime.combine(day, time.min, tzinfo=UTC)
            return start_of_day + timedelta(days=1) if param == "to" else start_of_day
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{param} must be an ISO date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM:SSZ); got {_quote(text)}",
            param=param,
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _quote(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def cost_report(
    records: Iterable[UsageRecord],
    group_by: GroupBy = "provider",
    baseline: Price | None = None,
    baseline_name: str | None = None,
) -> dict[str, Any]:
    """Totals and per-group rows, sorted by group key.

    Each row: requests, failed_requests (status >= 400), prompt_tokens,
    completion_tokens, cost_usd, estimated_requests, and with a baseline:
    baseline_cost_usd (the same tokens at the baseline price), saving_usd
    (baseline minus actual) and saving_pct (of the baseline cost; None when 0).
    """
    if group_by not in GROUP_BY_VALUES:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_VALUES)}")
    total = _Acc()
    groups: dict[str, _Acc] = {}
    for rec in records:
        key = _group_key(rec, group_by)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Acc()
        acc.add(rec, baseline)
        total.add(rec, baseline)
    return {
        "group_by": group_by,
        "baseline": None
        if baseline is None
        else {"name": baseline_name, "input_per_1k": baseline.input_per_1k, "output_per_1k": baseline.output_per_1k},
        "totals": total.row(baseline is not None),
        "groups": [{"key": key, **groups[key].row(baseline is not None)} for key in sorted(groups)],
    }


def _group_key(rec: UsageRecord, group_by: str) -> str:
    if group_by == "day":
        t = rec.time if rec.time.tzinfo is not None else rec.time.replace(tzinfo=UTC)
        return t.astimezone(UTC).date().isoformat()
    return str(getattr(rec, group_by) or "unknown")


class _Acc:
    __slots__ = ("requests", "failed", "prompt", "completion", "cost", "estimated", "baseline")

    def __init__(self) -> None:
        self.requests = self.failed = self.prompt = self.completion = self.estimated = 0
        self.cost = self.baseline = 0.0

    def add(self, rec: UsageRecord, baseline: Price | None) -> None:
        self.requests += 1
        self.failed += rec.status >= 400
        self.prompt += rec.prompt_tokens
        self.completion += rec.completion_tokens
        self.cost += rec.cost_usd
        self.estimated += bool(rec.estimated)
        if baseline is not None:
            self.baseline += cost_usd(baseline, rec.prompt_tokens, rec.completion_tokens)

    def row(self, with_baseline: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "requests": self.requests,
            "failed_requests": self.failed,
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "cost_usd": round(self.cost, USD_DIGITS),
            "estimated_requests": self.estimated,
            "baseline_cost_usd": None,
            "saving_usd": None,
            "saving_pct": None,
        }
        if with_baseline:
            saving = self.baseline - self.cost
            row["baseline_cost_usd"] = round(self.baseline, USD_DIGITS)
            row["saving_usd"] = round(saving, USD_DIGITS)
            row["saving_pct"] = round(100.0 * saving / self.baseline, 2) if self.baseline > 0 else None
        return row
