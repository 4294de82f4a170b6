"""The pure breaker state machine, its settings and the Retry-After parser.

Flows advance a fake clock; nothing sleeps."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import UTC, datetime

import pytest

from shared.resilience import BreakerSettings, parse_retry_after
from shared.resilience import machine as m
from shared.resilience.machine import BreakerState, Outcomes

T0 = 1_800_000_000.0


class Flow:
    """One breaker driven outcome by outcome, as the facade does on one instance."""

    def __init__(self, **settings) -> None:
        self.st = BreakerSettings.from_dict(settings)
        self.now = T0
        self.s = BreakerState(state_since=T0)
        self.transitions: list[tuple[str, str]] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def _take(self, tr) -> None:
        if tr is not None:
            self.transitions.append((tr.from_state, tr.to_state))

    def outcome(self, ok: bool, retry_after: float | None = None, failure_class: str = "http_503") -> None:
        d = Outcomes()
        d.add(ok, self.now, self.st, self.s.epoch, None if ok else failure_class, retry_after)
        self.s, tr = m.apply_outcomes(self.s, d, self.st, self.now)
        self._take(tr)

    def fail(self, n: int = 1, **kw) -> None:
        for _ in range(n):
            self.outcome(False, **kw)

    def succeed(self, n: int = 1) -> None:
        for _ in range(n):
            self.outcome(True)

    def claim(self, token: str = "i#1") -> bool:
        ns, tr = m.claim_probe(self.s, self.st, self.now, token)
        if ns is None:
            return False
        self.s = ns
        self._take(tr)
        return True

    def probe(self, ok: bool, token: str = "i#1", retry_after: float = 0.0) -> None:
        until = self.now + min(retry_after, self.st.max_retry_after_seconds) if retry_after else 0.0
        self.s, tr = m.probe_result(self.s, self.st, self.now, token, ok, None if ok else "timeout", until)
        self._take(tr)

    @property
    def open_for(self) -> float:
        return self.s.open_until - self.now


def test_closed_open_halfopen_closed():
    f = Flow(consecutive_failures=3, open_seconds=10)
    f.fail(2)
    assert f.s.state == m.CLOSED
    f.fail()
    assert f.s.state == m.OPEN and f.open_for == 10
    f.advance(9.999)
    assert not f.claim()
    f.advance(0.001)
    assert f.claim("i#1")
    assert f.s.state == m.HALF_OPEN and f.s.probe_holder == "i#1"
    assert not f.claim("j#1"), "one probe at a time"
    f.probe(True, "i#1")
    assert f.s.state == m.CLOSED and f.s.consecutive_opens == 0 and f.s.consecutive_failures == 0
    assert f.transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_closed_open_halfopen_open_with_grown_duration_then_cap():
    f = Flow(consecutive_failures=1, open_seconds=10, open_backoff_multiplier=3, max_open_seconds=50)
    f.fail()
    durations = [f.open_for]
    for _ in range(3):
        f.advance(f.open_for)
        assert f.claim()
        f.probe(False)
        durations.append(f.open_for)
    assert durations == [10, 30, 50, 50]
    assert f.s.consecutive_opens == 4
    f.advance(f.open_for)
    assert f.claim()
    f.probe(True)
    f.fail()
    assert f.open_for == 10, "backoff starts over after a close"


def test_ratio_trip_needs_min_calls_and_ratio():
    f = Flow(failure_ratio=0.5, min_calls=10, consecutive_failures=0, window_seconds=60)
    for _ in range(4):
        f.fail()
        f.succeed()
    assert f.s.state == m.CLOSED, "8 calls < min_calls"
    f.succeed()
    assert f.s.state == m.CLOSED, "4/9"
    f.fail()
    assert f.s.state == m.OPEN, "5/10 reaches 0.5"
    assert "failure ratio 5/10" in f.s.last_cause


def test_ratio_window_slides_old_failures_out():
    f = Flow(failure_ratio=0.5, min_calls=4, consecutive_failures=0, window_seconds=60)
    f.fail(3)
    f.advance(65.9)
    f.succeed(2)
    f.fail()
    assert f.s.state == m.OPEN, "buckets are window/10 wide: a failure counts for up to window + 6s"
    f = Flow(failure_ratio=0.5, min_calls=4, consecutive_failures=0, window_seconds=60)
    f.fail(3)
    f.advance(66)
    f.succeed(2)
    f.fail()
    assert f.s.state == m.CLOSED, "the first three failures left the window (1/3)"
    assert f.s.window_counts(f.st, f.now) == (3, 1)


def test_consecutive_trip_is_reset_by_a_success():
    f = Flow(consecutive_failures=3, min_calls=100)
    f.fail(2)
    f.succeed()
    f.fail(2)
    assert f.s.state == m.CLOSED and f.s.consecutive_failures == 2
    f.fail()
    assert f.s.state == m.OPEN and "3 consecutive" in f.s.last_cause


def test_consecutive_zero_disables_the_rule():
    f = Flow(consecutive_failures=0, min_calls=1000)
    f.fail(50)
    assert f.s.state == m.CLOSED


def test_aggregated_delta_counts_like_single_outcomes():
    st = BreakerSettings.from_dict({"consecutive_failures": 4, "min_calls": 100})
    d = Outcomes()
    for ok in (False, False, True, False, False, False):
        d.add(ok, T0, st, 0, "timeout")
    assert (d.successes, d.failures, d.trailing_failures) == (1, 5, 3)
    s, tr = m.apply_outcomes(BreakerState(consecutive_failures=2), d, st, T0)
    assert tr is None and s.consecutive_failures == 3
    d2 = Outcomes()
    d2.add(False, T0, st, 0)
    s, tr = m.apply_outcomes(s, d2, st, T0)
    assert tr is not None and s.state == m.OPEN


def test_counting_outcomes_changes_only_the_counts():
    import dataclasses

    st = BreakerSettings.from_dict({"min_calls": 100, "consecutive_failures": 100})
    values = dict(state=m.CLOSED, epoch=7, state_since=T0 - 5, buckets=((T0 - 1, 3, 1),),
                  consecutive_failures=1, open_until=T0 - 100, consecutive_opens=2,
                  last_failure_class="timeout", probe_holder="old#1", probe_expires=T0 - 50,
                  last_cause="probe succeeded")
    assert set(values) == {f.name for f in dataclasses.fields(BreakerState)}  # a new field belongs here too
    before = BreakerState(**values)
    for ok in (True, False):
        d = Outcomes()
        d.add(ok, T0, st, 7, None if ok else "http_503")
        after, tr = m.apply_outcomes(before, d, st, T0)
        assert tr is None
        counts = {"buckets", "consecutive_failures", "last_failure_class"}
        for f in dataclasses.fields(BreakerState):
            if f.name not in counts:
                assert getattr(after, f.name) == getattr(before, f.name), f.name
        assert after.window_counts(st, T0) == (4, 1 if ok else 2)
        assert after.consecutive_failures == (0 if ok else 2)
        assert after.last_failure_class == ("timeout" if ok else "http_503")


def test_outcomes_of_a_past_epoch_are_not_counted():
    f = Flow(consecutive_failures=1)
    d = Outcomes()
    d.add(False, f.now, f.st, epoch=7)
    s, tr = m.apply_outcomes(f.s, d, f.st, f.now)
    assert tr is None and s.state == m.CLOSED
    s, tr = m.apply_outcomes(f.s, d, f.st, f.now, any_epoch=True)
    assert s.state == m.OPEN


def test_retry_after_floor_and_cap():
    f = Flow(consecutive_failures=2, open_seconds=10, max_retry_after_seconds=120)
    f.fail()
    f.fail(retry_after=45)
    assert f.s.state == m.OPEN and f.open_for == 45, "Retry-After above open_seconds is the floor"
    g = Flow(consecutive_failures=2, open_seconds=10, max_retry_after_seconds=120)
    g.fail(retry_after=7200)
    assert g.open_for == 120, "a retry-after alone opens, capped by max_retry_after_seconds"


def test_retry_after_alone_opens_for_exactly_its_duration():
    f = Flow(open_seconds=5)
    f.fail(retry_after=30)
    assert f.s.state == m.OPEN and f.open_for == 30
    f.advance(29.999)
    assert not f.claim()
    f.advance(0.001)
    assert f.claim()


def test_new_trip_never_shortens_the_deadline():
    f = Flow(consecutive_failures=1, open_seconds=10)
    f.fail(retry_after=300)
    until = f.s.open_until
    # a late outcome with a shorter Retry-After, and a re-open attempt, keep the deadline
    f.advance(1)
    f.fail(retry_after=5)
    assert f.s.open_until == until
    s, _ = m.apply_outcomes(f.s, Outcomes(), f.st, f.now)
    assert s.open_until == until
    reopened = m._open(f.s, f.st, f.now, "again")
    assert reopened.open_until == until
    # a longer one extends it
    f.fail(retry_after=600)
    assert f.s.open_until == f.now + 600


def test_probe_failure_honours_retry_after():
    f = Flow(consecutive_failures=1, open_seconds=10)
    f.fail()
    f.advance(10)
    assert f.claim()
    f.probe(False, retry_after=100)
    assert f.s.state == m.OPEN and f.open_for == 100


def test_expired_probe_lease_can_be_taken_over_and_old_result_is_ignored():
    f = Flow(consecutive_failures=1, open_seconds=10, probe_lease_seconds=5)
    f.fail()
    f.advance(10)
    assert f.claim("crashed#1")
    f.advance(4.9)
    assert not f.claim("other#1")
    f.advance(0.1)
    assert f.claim("other#1")
    f.probe(True, "crashed#1")
    assert f.s.state == m.HALF_OPEN, "the expired holder's result does not count"
    f.probe(True, "other#1")
    assert f.s.state == m.CLOSED


def test_release_frees_the_probe_lease():
    f = Flow(consecutive_failures=1, open_seconds=10)
    f.fail()
    f.advance(10)
    assert f.claim("a#1")
    f.s = m.release_probe(f.s, "b#1")
    assert not f.claim("b#2"), "only the holder can release"
    f.s = m.release_probe(f.s, "a#1")
    assert f.claim("b#2")


def test_isolate_holds_open_until_reset():
    f = Flow(consecutive_failures=1, open_seconds=10)
    f.s, tr = m.isolate(f.s, f.now)
    assert f.s.state == m.ISOLATED and tr == ("closed", "isolated", "manual isolate")
    f.advance(10_000)
    assert not f.claim()
    f.succeed(5)
    assert f.s.state == m.ISOLATED
    f.fail(5)
    assert f.s.state == m.ISOLATED
    f.s, tr = m.reset(f.s, f.now)
    assert f.s.state == m.CLOSED and f.s.consecutive_opens == 0 and tr.to_state == "closed"
    f.fail()
    assert f.s.state == m.OPEN and f.open_for == 10


def test_outcomes_merge_puts_a_failed_flush_back_in_order():
    st = BreakerSettings()
    old, new = Outcomes(), Outcomes()
    for ok in (True, False, False):
        old.add(ok, T0, st, 3, "timeout")
    new.add(False, T0 + 1, st, 3, "http_502", retry_after=9)
    merged = new.merged_after(old)
    assert (merged.successes, merged.failures, merged.trailing_failures) == (1, 3, 3)
    assert merged.last_failure_class == "http_502" and merged.retry_after_until == T0 + 10
    newer_epoch = Outcomes()
    newer_epoch.add(True, T0 + 2, st, 4)
    merged = newer_epoch.merged_after(old)
    assert (merged.epoch, merged.successes, merged.failures) == (4, 1, 0)


# --- settings ---------------------------------------------------------------------------


def test_settings_defaults_and_schema():
    s = BreakerSettings.from_dict({})
    assert s == BreakerSettings()
    assert s.to_dict() == {
        "failure_ratio": 0.5, "window_seconds": 60.0, "min_calls": 10, "consecutive_failures": 5,
        "open_seconds": 30.0, "open_backoff_multiplier": 2.0, "max_open_seconds": 600.0,
        "max_retry_after_seconds": 3600.0, "probe_lease_seconds": 30.0, "cache_staleness_seconds": 1.0,
        "flush_interval_seconds": 1.0,
    }
    schema = BreakerSettings.SCHEMA
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(s.to_dict())
    for name, prop in schema["properties"].items():
        assert prop["default"] == getattr(s, name) and prop["description"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"failure_rate": 0.5}, "'failure_rate'"),
        ({"failure_ratio": 0}, "'failure_ratio'"),
        ({"failure_ratio": 1.5}, "'failure_ratio'"),
        ({"min_calls": 2.5}, "'min_calls'"),
        ({"min_calls": True}, "'min_calls'"),
        ({"open_seconds": "30"}, "'open_seconds'"),
        ({"open_backoff_multiplier": 0.5}, "'open_backoff_multiplier'"),
        ({"open_seconds": 100, "max_open_seconds": 50}, "'max_open_seconds'"),
        ({"window_seconds": float("inf")}, "'window_seconds'"),
    ],
)
def test_settings_errors_name_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        BreakerSettings.from_dict(data, where="providers[0].breaker")


def test_settings_accept_ints_for_numbers():
    s = BreakerSettings.from_dict({"open_seconds": 5, "min_calls": 3.0, "cache_staleness_seconds": 0})
    assert s.open_seconds == 5.0 and s.min_calls == 3 and isinstance(s.min_calls, int)


# --- Retry-After ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": "0"}, 0.0),
        ({"RETRY-AFTER": " 2.5 "}, 2.5),
        ({"Retry-After": format_datetime(datetime(2026, 11, 25, 12, 0, 45, tzinfo=UTC), usegmt=True)}, 45.0),
        ({"Retry-After": "Wed, 25 Nov 2026 11:59:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "Wed, 25 Nov 2026 12:01:00"}, 60.0),  # no zone: GMT
        ({"retry-after-ms": "1500"}, 1.5),
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"X-Ms-Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "100", "x-ms-retry-after-ms": "900", "Retry-After": "9"}, 0.1),
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, NOW) == expected
