"""The breaker as a pure state machine: no I/O, no clock of its own.

Every function takes the current `BreakerState`, the provider's `BreakerSettings` and
`now` (seconds since the epoch, from the caller's injected clock) and returns a new
state plus the `Transition` it made, if any. The same functions run on an instance's
cached view (local counting) and inside the store's read-modify-write loop (shared
state), so a local trip and the shared trip follow identical rules.

    closed --(ratio over window | N consecutive | Retry-After)--> open
    open --(open_until passed; one instance claims the probe lease)--> half_open
    half_open --(probe ok)--> closed        half_open --(probe failed)--> open (grown)
    any --isolate()--> isolated --reset()--> closed

Outcomes are counted in `Outcomes`, a mergeable aggregate: many calls on one instance
become one delta written to the store at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from .policy import BreakerSettings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
ISOLATED = "isolated"
STATES = (CLOSED, OPEN, HALF_OPEN, ISOLATED)

BUCKETS = 10
"""The failure-ratio window is kept as this many time buckets (a sliding window whose
oldest bucket expires as a whole)."""


class Transition(NamedTuple):
    from_state: str
    to_state: str
    cause: str


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One provider's breaker, exactly what the store keeps."""

    state: str = CLOSED
    epoch: int = 0
    """Bumped on every transition; outcomes admitted in an older epoch are not counted."""
    state_since: float = 0.0
    buckets: tuple[tuple[float, int, int], ...] = ()
    """(bucket start, calls, failures), oldest first, within the window."""
    consecutive_failures: int = 0
    open_until: float = 0.0
    consecutive_opens: int = 0
    last_failure_class: str | None = None
    probe_holder: str | None = None
    probe_expires: float = 0.0
    last_cause: str | None = None

    def window_counts(self, settings: BreakerSettings, now: float) -> tuple[int, int]:
        """(calls, failures) in the window ending at `now`."""
        width = settings.window_seconds / BUCKETS
        horizon = now - settings.window_seconds
        calls = failures = 0
        for start, c, f in self.buckets:
            if start + width > horizon:
                calls += c
                failures += f
        return calls, failures

    def probe_busy(self, now: float) -> bool:
        return self.state == HALF_OPEN and self.probe_holder is not None and now < self.probe_expires


@dataclass(slots=True)
class Outcomes:
    """Outcomes counted locally since the last flush: mergeable, order-insensitive
    except for the run of failures at the end (for the consecutive rule)."""

    epoch: int = -1
    successes: int = 0
    failures: int = 0
    trailing_failures: int = 0
    buckets: dict[float, list[int]] = field(default_factory=dict)
    last_failure_class: str | None = None
    retry_after_until: float = 0.0
    """Absolute time before which the provider asked not to be called (Retry-After, capped)."""
    first_at: float = math.inf

    @property
    def empty(self) -> bool:
        return self.successes == 0 and self.failures == 0 and self.retry_after_until == 0.0

    def add(
        self,
        ok: bool,
        now: float,
        settings: BreakerSettings,
        epoch: int,
        failure_class: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if retry_after is not None and retry_after > 0 and not ok:
            until = now + min(retry_after, settings.max_retry_after_seconds)
            self.retry_after_until = max(self.retry_after_until, until)
        if epoch != self.epoch:
            if self.successes or self.failures:
                # The breaker moved on (e.g. closed again) since these were counted:
                # they describe a period that is over.
                self.successes = self.failures = self.trailing_failures = 0
                self.buckets = {}
            self.epoch = epoch
        width = settings.window_seconds / BUCKETS
        start = math.floor(now / width) * width
        bucket = self.buckets.get(start)
        if bucket is None:
            bucket = self.buckets[start] = [0, 0]
        bucket[0] += 1
        if ok:
            self.successes += 1
            self.trailing_failures = 0
        else:
            bucket[1] += 1
            self.failures += 1
            self.trailing_failures += 1
            if failure_class:
                self.last_failure_class = failure_class
        self.first_at = min(self.first_at, now)

    def note_retry_after(self, now: float, settings: BreakerSettings, retry_after: float | None) -> None:
        """Only the Retry-After of a failure (its count belongs to a past epoch)."""
        if retry_after is not None and retry_after > 0:
            until = now + min(retry_after, settings.max_retry_after_seconds)
            self.retry_after_until = max(self.retry_after_until, until)
            self.first_at = min(self.first_at, now)

    def merged_after(self, older: "Outcomes") -> "Outcomes":
        """`older` followed by `self` (puts back a delta whose flush failed)."""
        out = Outcomes()
        out.retry_after_until = max(older.retry_after_until, self.retry_after_until)
        out.first_at = min(older.first_at, self.first_at)
        has_old = bool(older.successes or older.failures)
        has_new = bool(self.successes or self.failures)
        parts = [p for p, has in ((older, has_old), (self, has_new)) if has]
        if len(parts) == 2 and older.epoch != self.epoch:
            parts = [self]  # the newer epoch wins, as in `add`
        for p in parts:
            out.epoch = p.epoch
            out.successes += p.successes
            out.failures += p.failures
            out.trailing_failures = p.trailing_failures if p.successes else out.trailing_failures + p.failures
            out.last_failure_class = p.last_failure_class or out.last_failure_class
            for start, (c, f) in p.buckets.items():
                b = out.buckets.setdefault(start, [0, 0])
                b[0] += c
                b[1] += f
        return out


# --- transitions -------------------------------------------------------------------


def _open(s: BreakerState, settings: BreakerSettings, now: float, cause: str,
          retry_after_until: float = 0.0, retry_after_only: bool = False) -> BreakerState:
    opens = s.consecutive_opens + 1
    if retry_after_only:
        until = retry_after_until
    else:
        until = max(now + settings.open_duration(opens), retry_after_until)
    if s.state == OPEN:
        until = max(until, s.open_until)  # a new trip never shortens an open deadline
    return replace(
        s, state=OPEN, epoch=s.epoch + 1, state_since=now, open_until=until,
        consecutive_opens=opens, probe_holder=None, probe_expires=0.0, last_cause=cause,
    )


def _prune(buckets: dict[float, list[int]], settings: BreakerSettings, now: float) -> tuple[tuple[float, int, int], ...]:
    width = settings.window_seconds / BUCKETS
    horizon = now - settings.window_seconds
    return tuple((start, c, f) for start, (c, f) in sorted(buckets.items()) if start + width > horizon)


def _counted(s: BreakerState, buckets: tuple[tuple[float, int, int], ...], consecutive: int,
             last_failure_class: str | None) -> BreakerState:
    """`replace(s, buckets=..., consecutive_failures=..., last_failure_class=...)`, spelled out:
    this runs on every recorded outcome, and the generic `replace` costs several times more."""
    return BreakerState(
        state=s.state, epoch=s.epoch, state_since=s.state_since, buckets=buckets,
        consecutive_failures=consecutive, open_until=s.open_until, consecutive_opens=s.consecutive_opens,
        last_failure_class=last_failure_class, probe_holder=s.probe_holder, probe_expires=s.probe_expires,
        last_cause=s.last_cause,
    )


def apply_outcomes(
    s: BreakerState, d: Outcomes, settings: BreakerSettings, now: float, *, any_epoch: bool = False
) -> tuple[BreakerState, Transition | None]:
    """Add a delta of outcomes. Counts only apply to a closed breaker of the same epoch
    (`any_epoch` for a state recreated from scratch); a Retry-After applies to a closed
    breaker (trips it) and to an open one (extends it, never shortens)."""
    if d.empty:
        return s, None
    if s.state == OPEN:
        if d.retry_after_until > s.open_until:
            return replace(s, open_until=d.retry_after_until, last_cause="retry-after extended"), None
        return s, None
    if s.state != CLOSED:
        return s, None
    counted = (d.successes or d.failures) and (any_epoch or d.epoch == s.epoch)
    if counted:
        merged: dict[float, list[int]] = {start: [c, f] for start, c, f in s.buckets}
        for start, (c, f) in d.buckets.items():
            b = merged.setdefault(start, [0, 0])
            b[0] += c
            b[1] += f
        consecutive = d.trailing_failures if d.successes else s.consecutive_failures + d.failures
        s = _counted(s, _prune(merged, settings, now), consecutive, d.last_failure_class or s.last_failure_class)
    before = CLOSED
    cause = trip_cause(s, settings, now)
    if cause is not None:
        return _open(s, settings, now, cause, d.retry_after_until), Transition(before, OPEN, cause)
    if d.retry_after_until > now:
        cause = f"retry-after {d.retry_after_until - now:.1f}s"
        return _open(s, settings, now, cause, d.retry_after_until, retry_after_only=True), Transition(before, OPEN, cause)
    return s, None


def trip_cause(s: BreakerState, settings: BreakerSettings, now: float) -> str | None:
    if settings.consecutive_failures and s.consecutive_failures >= settings.consecutive_failures:
        return f"{s.consecutive_failures} consecutive failures"
    calls, failures = s.window_counts(settings, now)
    if calls >= settings.min_calls and calls and failures / calls >= settings.failure_ratio:
        return f"failure ratio {failures}/{calls} in {settings.window_seconds:g}s"
    return None


def claim_probe(
    s: BreakerState, settings: BreakerSettings, now: float, token: str
) -> tuple[BreakerState | None, Transition | None]:
    """Take the half-open probe lease, or None when it is not available."""
    if s.state == OPEN and now >= s.open_until:
        cause = "open period elapsed"
        ns = replace(s, state=HALF_OPEN, epoch=s.epoch + 1, state_since=now, probe_holder=token,
                     probe_expires=now + settings.probe_lease_seconds, last_cause=cause)
        return ns, Transition(OPEN, HALF_OPEN, cause)
    if s.state == HALF_OPEN and not s.probe_busy(now):
        return replace(s, probe_holder=token, probe_expires=now + settings.probe_lease_seconds), None
    return None, None


def probe_result(
    s: BreakerState, settings: BreakerSettings, now: float, token: str, ok: bool,
    failure_class: str | None = None, retry_after_until: float = 0.0,
) -> tuple[BreakerState, Transition | None]:
    """The probe's outcome. Ignored unless `token` still holds the lease's half-open period
    (an expired lease taken over by another instance belongs to that instance)."""
    if s.state != HALF_OPEN or s.probe_holder != token:
        return s, None
    if ok:
        cause = "probe succeeded"
        ns = replace(s, state=CLOSED, epoch=s.epoch + 1, state_since=now, buckets=(), consecutive_failures=0,
                     open_until=0.0, consecutive_opens=0, probe_holder=None, probe_expires=0.0, last_cause=cause)
        return ns, Transition(HALF_OPEN, CLOSED, cause)
    cause = f"probe failed ({failure_class})" if failure_class else "probe failed"
    s = replace(s, last_failure_class=failure_class or s.last_failure_class)
    return _open(s, settings, now, cause, retry_after_until), Transition(HALF_OPEN, OPEN, cause)


def release_probe(s: BreakerState, token: str) -> BreakerState:
    """Give the lease back without an outcome; the next request may probe at once."""
    if s.state == HALF_OPEN and s.probe_holder == token:
        return replace(s, probe_holder=None, probe_expires=0.0)
    return s


def reset(s: BreakerState, now: float, cause: str = "manual reset") -> tuple[BreakerState, Transition | None]:
    ns = BreakerState(state=CLOSED, epoch=s.epoch + 1, state_since=now, last_cause=cause,
                      last_failure_class=s.last_failure_class)
    return ns, (Transition(s.state, CLOSED, cause) if s.state != CLOSED else None)


def isolate(s: BreakerState, now: float, cause: str = "manual isolate") -> tuple[BreakerState, Transition | None]:
    if s.state == ISOLATED:
        return s, None
    ns = replace(s, state=ISOLATED, epoch=s.epoch + 1, state_since=now, probe_holder=None,
                 probe_expires=0.0, last_cause=cause)
    return ns, Transition(s.state, ISOLATED, cause)
