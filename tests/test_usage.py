"""Usage and cost: pricing and token estimates, the cost report and its query,
MemoryLedger, and TableLedger on a real Azurite."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import InvalidRequest
from shared.storage import TableConnection
from shared.usage import (
    GROUP_BY_VALUES,
    LedgerUnavailable,
    MemoryLedger,
    Price,
    TableLedger,
    UsageLedger,
    UsageRecord,
    cost_report,
    cost_usd,
    estimate_prompt_tokens,
    estimate_tokens,
    parse_report_query,
)
from shared.usage.pricing import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS

BASE = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)  # records around it span two UTC days


def rec(i: int = 0, *, provider="openai", model="gpt-4o-mini", task_type="chat", prompt=100, completion=50,
        cost=0.001, estimated=False, status=200, time=None, request_id=None, stream=False) -> UsageRecord:
    return UsageRecord(
        request_id=request_id or f"req-{i}",
        time=time or BASE + timedelta(minutes=i),
        provider=provider,
        model=model,
        task_type=task_type,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        estimated=estimated,
        latency_ms=100 + i,
        ttft_ms=20 if stream else None,
        status=status,
        stream=stream,
        strategy="cost",
    )


# --------------------------------------------------------------------------- pricing


def test_cost_is_per_thousand_tokens_in_and_out():
    price = Price(input_per_1k=0.5, output_per_1k=1.5)
    assert cost_usd(price, 2000, 1000) == pytest.approx(2000 / 1000 * 0.5 + 1000 / 1000 * 1.5)
    assert cost_usd(price, 0, 0) == 0.0
    assert cost_usd(Price(0, 0), 10**6, 10**6) == 0.0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "1", True])
def test_price_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="input_per_1k"):
        Price(input_per_1k=bad, output_per_1k=1.0)


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_estimate_tokens_is_about_four_chars_each(text, tokens):
    assert estimate_tokens(text) == tokens


def test_estimate_prompt_tokens_counts_text_parts_and_per_message_overhead():
    texts = ["You are terse.", "Summarise this: " + "word " * 50, "and this part", "x"]
    messages = [
        {"role": "system", "content": texts[0]},
        {"role": "user", "content": texts[1]},
        {"role": "user", "content": [
            {"type": "text", "text": texts[2]},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": texts[3], "name": "lookup"},
        "not a message",
    ]
    expected = sum(estimate_tokens(t) for t in texts) + estimate_tokens("lookup")
    expected += MESSAGE_OVERHEAD_TOKENS * 5 + REPLY_PRIMING_TOKENS
    assert estimate_prompt_tokens(messages) == expected
    assert estimate_prompt_tokens([]) == 0


# --------------------------------------------------------------------------- report

WORKLOAD = [
    # provider, model, task_type, prompt, completion, price, estimated, status, day offset (hours from BASE)
    ("openai", "gpt-4o-mini", "chat", 1200, 300, Price(0.15, 0.6), False, 200, 0),
    ("openai", "gpt-4o-mini", "code", 800, 900, Price(0.15, 0.6), True, 200, 2),
    ("openai", "gpt-4o", "reasoning", 3000, 1500, Price(2.5, 10.0), False, 200, 3),
    ("anthropic", "claude-3-5-haiku", "chat", 500, 250, Price(0.8, 4.0), False, 200, 0.5),
    ("anthropic", "claude-3-5-haiku", "summarization", 9000, 400, Price(0.8, 4.0), True, 200, 26),
    ("mistral", "mistral-small", "chat", 0, 0, Price(0.2, 0.6), False, 503, 27),
    ("mistral", "mistral-small", "translation", 700, 650, Price(0.2, 0.6), False, 200, 30),
]
BASELINE = Price(input_per_1k=2.5, output_per_1k=10.0)


def workload_records() -> list[UsageRecord]:
    return [
        rec(i, provider=p, model=m, task_type=t, prompt=pi, completion=co, cost=cost_usd(price, pi, co),
            estimated=est, status=st, time=BASE + timedelta(hours=h))
        for i, (p, m, t, pi, co, price, est, st, h) in enumerate(WORKLOAD)
    ]


@pytest.mark.parametrize("group_by", GROUP_BY_VALUES)
def test_cost_report_groups_and_saving_math(group_by):
    records = workload_records()
    report = cost_report(records, group_by, BASELINE, "gpt-4o")
    assert report["group_by"] == group_by
    assert report["baseline"] == {"name": "gpt-4o", "input_per_1k": 2.5, "output_per_1k": 10.0}

    def key(r: UsageRecord) -> str:
        return r.time.date().isoformat() if group_by == "day" else getattr(r, group_by)

    keys = sorted({key(r) for r in records})
    assert [g["key"] for g in report["groups"]] == keys
    for row, subset in [(report["totals"], records)] + [
        (g, [r for r in records if key(r) == g["key"]]) for g in report["groups"]
    ]:
        actual = sum(r.cost_usd for r in subset)
        base = sum(cost_usd(BASELINE, r.prompt_tokens, r.completion_tokens) for r in subset)
        assert row["requests"] == len(subset)
        assert row["failed_requests"] == sum(r.status >= 400 for r in subset)
        assert row["prompt_tokens"] == sum(r.prompt_tokens for r in subset)
        assert row["completion_tokens"] == sum(r.completion_tokens for r in subset)
        assert row["estimated_requests"] == sum(r.estimated for r in subset)
        assert row["cost_usd"] == pytest.approx(actual, abs=1e-6)
        assert row["baseline_cost_usd"] == pytest.approx(base, abs=1e-6)
        assert row["saving_usd"] == pytest.approx(base - actual, abs=1e-6)
        if base > 0:
            assert row["saving_pct"] == pytest.approx(100 * (base - actual) / base, abs=0.01)
        else:
            assert row["saving_pct"] is None
    # sanity: cheap models routed instead of the baseline model saved money overall
    assert report["totals"]["saving_usd"] > 0


def test_cost_report_without_baseline_and_empty():
    report = cost_report(workload_records(), "provider", None, None)
    assert report["baseline"] is None
    assert all(g["baseline_cost_usd"] is None and g["saving_pct"] is None for g in report["groups"])
    empty = cost_report([], "day", BASELINE, "gpt-4o")
    assert empty["groups"] == [] and empty["totals"]["requests"] == 0 and empty["totals"]["saving_pct"] is None


def test_cost_report_day_uses_utc_days():
    plus2 = timezone(timedelta(hours=2))
    r = rec(time=datetime(2025, 3, 2, 1, 0, tzinfo=plus2))  # 2025-03-01 23:00 UTC
    assert [g["key"] for g in cost_report([r], "day")["groups"]] == ["2025-03-01"]


# --------------------------------------------------------------------------- report query

NOW = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)


def test_report_query_defaults_to_last_seven_days_by_provider():
    q = parse_report_query({}, NOW)
    assert (q.start, q.end, q.group_by) == (NOW - timedelta(days=7), NOW, "provider")
    assert parse_report_query({"from": "", "to": " ", "group_by": ""}, NOW) == q


def test_report_query_dates_and_datetimes():
    q = parse_report_query({"from": "2025-03-01", "to": "2025-03-03", "group_by": "day"}, NOW)
    assert q.start == datetime(2025, 3, 1, tzinfo=UTC)
    assert q.end == datetime(2025, 3, 4, tzinfo=UTC)  # the `to` day is included
    assert q.group_by == "day"
    q = parse_report_query({"from": "2025-03-01T12:00:00+02:00", "to": "2025-03-02T08:00:00Z"}, NOW)
    assert q.start == datetime(2025, 3, 1, 10, tzinfo=UTC) and q.end == datetime(2025, 3, 2, 8, tzinfo=UTC)
    q = parse_report_query({"from": "2025-03-01T06:00:00"}, NOW)  # naive: UTC; `to` defaults to now
    assert q.start == datetime(2025, 3, 1, 6, tzinfo=UTC) and q.end == NOW
    q = parse_report_query({"to": "2025-03-05"}, NOW)
    assert q.start == datetime(2025, 2, 27, tzinfo=UTC)
    assert parse_report_query({"from": "2025-03-05", "to": "2025-03-05"}, NOW).end == datetime(2025, 3, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"from": "yesterday"}, "from", "'yesterday'"),
        ({"to": "2025-13-01"}, "to", "ISO date"),
        ({"from": "2025-03-05", "to": "2025-03-01"}, "from", "after"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "to", "92 days"),
        ({"group_by": "user"}, "group_by", "provider, model, task_type, day"),
    ],
)
def test_report_query_errors(params, param, words):
    with pytest.raises(InvalidRequest) as err:
        parse_report_query(params, NOW)
    assert err.value.param == param
    assert words in err.value.message
    assert err.value.status == 400


def test_report_query_maximum_range_is_configurable():
    parse_report_query({"from": "2025-01-01", "to": "2025-03-31"}, NOW)  # 90 days
    with pytest.raises(InvalidRequest):
        parse_report_query({"from": "2025-01-01", "to": "2025-03-31"}, NOW, max_range_days=30)


# --------------------------------------------------------------------------- memory ledger


async def test_memory_ledger_queries_half_open_ranges():
    ledger = MemoryLedger()
    assert isinstance(ledger, UsageLedger)
    await ledger.start()
    for i in range(5):
        ledger.record(rec(i))
    await ledger.flush()
    got = await ledger.query(BASE + timedelta(minutes=1), BASE + timedelta(minutes=3))
    assert [r.request_id for r in got] == ["req-1", "req-2"]
    await ledger.close()


def test_memory_ledger_is_bounded():
    ledger = MemoryLedger(max_records=3)
    for i in range(5):
        ledger.record(rec(i))
    assert [r.request_id for r in asyncio.run(ledger.query(BASE, BASE + timedelta(days=1)))] == [
        "req-2", "req-3", "req-4"]


# --------------------------------------------------------------------------- table ledger (Azurite)


def table_name() -> str:
    return "usage" + uuid.uuid4().hex[:12]


def conn_for(azurite) -> TableConnection:
    return TableConnection("test", connection_string=azurite.connection_string)


RANGE = (BASE - timedelta(days=1), BASE + timedelta(days=3))


async def test_table_ledger_round_trips_a_record(azurite):
    ledger = TableLedger(conn_for(azurite), table_name())
    assert isinstance(ledger, UsageLedger)
    original = rec(7, stream=True, estimated=True, cost=0.0123)
    ledger.record(original)
    ledger.record(rec(8))
    assert await ledger.flush() == 2
    got = await ledger.query(*RANGE)
    assert got[0] == original and got[1].ttft_ms is None
    await ledger.close()


async def test_concurrent_instances_give_exact_totals(azurite):
    name = table_name()
    ledgers = [TableLedger(conn_for(azurite), name, flush_interval=0.05, max_batch=20) for _ in range(4)]
    for ledger in ledgers:
        await ledger.start()

    async def writer(k: int, ledger: TableLedger) -> None:
        for i in range(150):
            # the same request id and time in every instance: RowKeys must still never collide
            ledger.record(rec(i, prompt=10 + k, completion=i, cost=0.001 * (k + 1), time=BASE + timedelta(minutes=i)))
            if i % 10 == 0:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(writer(k, ledger) for k, ledger in enumerate(ledgers)))
    await asyncio.gather(*(ledger.close() for ledger in ledgers))
    assert all(ledger.pending == 0 and ledger.dropped == 0 for ledger in ledgers)
    assert sum(ledger.written for ledger in ledgers) == 600

    reader = TableLedger(conn_for(azurite), name)
    got = await reader.query(*RANGE)
    await reader.close()
    assert len(got) == 600
    assert sum(r.prompt_tokens for r in got) == sum(150 * (10 + k) for k in range(4))
    assert sum(r.completion_tokens for r in got) == 4 * sum(range(150))
    assert sum(r.cost_usd for r in got) == pytest.approx(sum(150 * 0.001 * (k + 1) for k in range(4)))
    assert {r.time.date() for r in got} == {BASE.date(), (BASE + timedelta(days=1)).date()}  # two partitions


async def test_close_flushes_everything(azurite):
    name = table_name()
    ledger = TableLedger(conn_for(azurite), name, flush_interval=60.0)  # the timer never fires in this test
    await ledger.start()
    for i in range(250):
        ledger.record(rec(i))
    await ledger.close()
    assert ledger.lost_on_close == 0
    reader = TableLedger(conn_for(azurite), name)
    assert len(await reader.query(*RANGE)) == 250
    await reader.close()


async def test_query_range_filters_by_time(azurite):
    ledger = TableLedger(conn_for(azurite), table_name())
    for i in range(0, 180, 10):  # every 10 minutes from 23:00 for 3 hours
        ledger.record(rec(i))
    got = await ledger.query(BASE + timedelta(minutes=55), BASE + timedelta(minutes=130))
    assert [r.request_id for r in got] == [f"req-{i}" for i in range(60, 130, 10)]
    assert await ledger.query(BASE, BASE) == []
    await ledger.close()


async def test_overflow_drops_oldest_with_a_count(azurite, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.usage")
    ledger = TableLedger(conn_for(azurite), table_name(), max_queue=10)
    for i in range(25):
        ledger.record(rec(i))
    assert ledger.pending == 10 and ledger.dropped == 15
    assert await ledger.flush() == 10
    assert "dropped the 15 oldest records" in caplog.text
    got = await ledger.query(*RANGE)
    assert [r.request_id for r in got] == [f"req-{i}" for i in range(15, 25)]
    await ledger.close()


async def test_store_down_never_raises_and_retries_when_back(azurite_private, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.usage")
    ledger = TableLedger(
        conn_for(azurite_private), table_name(), flush_interval=0.05, max_queue=50, max_backoff=0.2, op_timeout=2.0,
    )
    await ledger.start()
    ledger.record(rec(0))
    assert await ledger.flush() == 1

    azurite_private.stop()
    for i in range(1, 61):
        ledger.record(rec(i))  # never raises, never blocks
    assert ledger.pending == 50 and ledger.dropped == 10
    assert await ledger.flush() == 0  # store down: nothing written, nothing lost beyond the bound
    assert ledger.pending == 50
    with pytest.raises(LedgerUnavailable):
        await ledger.query(*RANGE)
    await asyncio.sleep(0.3)  # the background task keeps failing and backing off meanwhile
    assert ledger.pending == 50
    assert "could not write" in caplog.text

    azurite_private.start()  # in-memory Azurite: a fresh store, the table must be re-created
    for _ in range(100):  # the background task writes the queue once the store is back
        if ledger.pending == 0:
            break
        await asyncio.sleep(0.05)
    assert ledger.pending == 0
    got = await ledger.query(*RANGE)
    assert [r.request_id for r in got] == [f"req-{i}" for i in range(11, 61)]  # the newest 50
    await ledger.close()
    assert ledger.lost_on_close == 0


async def test_close_with_store_down_counts_the_loss(azurite_private, caplog):
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    ledger = TableLedger(conn_for(azurite_private), table_name(), sleep=fake_sleep, close_attempts=3, op_timeout=2.0)
    azurite_private.stop()
    for i in range(5):
        ledger.record(rec(i))
    await ledger.close()
    assert ledger.lost_on_close == 5 and ledger.pending == 0
    assert len(slept) == 2  # three attempts, two waits, no real sleeping
    assert "5 records could not be written before close" in caplog.text


async def test_record_never_raises_on_a_malformed_record(azurite):
    ledger = TableLedger(conn_for(azurite), table_name())
    ledger.record(None)  # type: ignore[arg-type]
    assert ledger.pending == 0 and ledger.dropped == 1
    await ledger.close()
