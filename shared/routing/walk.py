"""One request's walk over its ordered candidates, shared by `complete` and `stream`.

It skips disabled providers and open breakers, keeps the request's total budget, records
each failure against the provider's breaker, and ends the walk the right way: a caller's
own error goes back as it is, a spent budget is a 504, and running out of candidates is a
503 with every attempt listed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from shared.errors import GatewayError
from shared.providers.base import UNAVAILABLE, ProviderError

from .attempts import Attempt, failure_class, failure_reason

if TYPE_CHECKING:
    from .planner import Decision
    from .router import Router


class CandidateWalk:
    def __init__(self, router: "Router", request: Any, decision: "Decision") -> None:
        self.router = router
        self.request = request
        self.decision = decision
        self.started = router.clock()
        self.deadline = self.started + router.config.limits.total_timeout_seconds
        self.attempts: list[Attempt] = []
        self.retry_after: float | None = None

    async def first_success(
        self,
        call: Callable[[Any], Awaitable[Any]],
        timeout_for: Callable[[str, float], float],
        timeout_reason: str,
    ) -> tuple[str, Any, Any, float]:
        """Try each candidate worth trying until `call(provider)` succeeds within
        `timeout_for(name, seconds left)`: (name, admission, result, start time).

        Failures are booked as they happen (`failed`, `timed_out`); a caller's own error or a
        spent budget ends the walk at once, and running out of candidates raises `exhausted()`.
        A plain loop rather than an async generator, so nothing is left for the event loop to
        finalize when a candidate succeeds.
        """
        router = self.router
        for name in self.decision.candidates[: router.config.limits.max_attempts]:
            admitted = await self._admit(name)
            if admitted is None:
                continue
            admission, remaining = admitted
            t0 = router.clock()
            try:
                async with asyncio.timeout(timeout_for(name, remaining)):
                    return name, admission, await call(router.providers[name]), t0
            except ProviderError as err:
                await self.failed(name, admission, err, t0)
            except TimeoutError:
                await self.timed_out(name, admission, t0, timeout_reason)
            except asyncio.CancelledError:
                await router.breakers.release(admission)
                raise
        raise self.exhausted()

    async def _admit(self, name: str) -> tuple[Any, float] | None:
        """(admission, seconds left) if `name` is worth trying now; None (booked as skipped) if not."""
        router = self.router
        if not router.config.providers[name].enabled:
            self.attempts.append(Attempt(name, "skipped", "disabled"))
            return None
        admission = await router.breakers.admit(name)
        if not admission.allowed:
            self.attempts.append(Attempt(name, "skipped", admission.reason or f"breaker {admission.state}"))
            self._note_retry_after(admission.retry_after)
            return None
        remaining = self.deadline - router.clock()
        if remaining <= 0:
            await router.breakers.release(admission)
            raise self._ended(504, self.deadline_error())
        if self.attempts and self.attempts[-1].outcome == "failed":
            last = self.attempts[-1]
            router.observer.failover(last.provider, name, last.reason)
        return admission, remaining

    def elapsed_ms(self, t0: float) -> float:
        return (self.router.clock() - t0) * 1000

    async def failed(self, name: str, admission: Any, err: ProviderError, t0: float) -> None:
        """Book a failed attempt; raises when the walk must end (the caller's own error)."""
        breakers = self.router.breakers
        elapsed = self.elapsed_ms(t0)
        self._note_retry_after(err.retry_after)
        if err.kind == UNAVAILABLE:
            await breakers.release(admission)
            self.attempts.append(Attempt(name, "skipped", err.message))
            return
        if not err.retryable:
            await breakers.release(admission)
            self.attempts.append(Attempt(name, "rejected", failure_reason(err), err.status, elapsed))
            from .router import rejected

            raise self._ended(err.status or 400, rejected(err, self.decision, self.attempts))
        await breakers.record(admission, ok=False, failure_class=failure_class(err), retry_after=err.retry_after)
        self.attempts.append(Attempt(name, "failed", failure_reason(err), err.status, elapsed))
        self.router.observer.attempt_failed(name, failure_class(err), elapsed / 1000, err.status)

    async def timed_out(self, name: str, admission: Any, t0: float, reason: str) -> None:
        """Book an attempt that ran out of time; raises 504 when the whole budget is spent."""
        elapsed = self.elapsed_ms(t0)
        await self.router.breakers.record(admission, ok=False, failure_class="timeout")
        self.attempts.append(Attempt(name, "failed", reason, None, elapsed))
        self.router.observer.attempt_failed(name, "timeout", elapsed / 1000, None)
        if self.router.clock() >= self.deadline - 1e-3:
            raise self._ended(504, self.deadline_error())

    def succeeded(self, name: str, latency_ms: float) -> None:
        self.attempts.append(Attempt(name, "ok", status=200, latency_ms=latency_ms))

    def exhausted(self) -> GatewayError:
        from .router import all_failed

        return self._ended(503, all_failed(self.decision, self.attempts, self.retry_after))

    def deadline_error(self) -> GatewayError:
        from shared.errors import DeadlineExceeded

        from .router import route_info

        return DeadlineExceeded(
            f"the request's total budget of {self.router.config.limits.total_timeout_seconds:g}s ran out "
            f"after {len(self.attempts)} attempt(s)",
            extra={"route": route_info(self.decision, self.attempts, None, None, None, None, None)},
        )

    def _ended(self, status: int, error: GatewayError) -> GatewayError:
        self.router.finish_failed(self.request, self.decision, status, self.started)
        return error

    def _note_retry_after(self, value: float | None) -> None:
        if value is not None:
            self.retry_after = value if self.retry_after is None else min(self.retry_after, value)
