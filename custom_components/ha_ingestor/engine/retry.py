"""The one retry policy of the integration: backoff with full jitter and a circuit breaker.

The live writer and the migration backfill both use it; there is no Home Assistant in here.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
import random
import time
from typing import Final

from .influx.errors import CannotConnect

type Clock = Callable[[], float]
type Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Timer:
    """Where a long-running job reads the time and waits: the system's, or a test's own."""

    monotonic: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep

    async def pause(self, seconds: float, interrupt: asyncio.Event) -> None:
        """Sleep ``seconds``, but return at once when ``interrupt`` is (or gets) set."""
        if interrupt.is_set():
            return
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        interrupted = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait((sleeping, interrupted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            interrupted.cancel()


SYSTEM_TIMER: Final = Timer()


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter.

    Retry number ``attempt`` (0-based) waits a uniformly random time in
    ``[0, min(maximum, base * factor**attempt)]``: the randomness keeps many clients (or many
    concurrent batches) from hammering a recovering server in lock-step.
    """

    base: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.maximum < self.base or self.factor < 1:
            raise ValueError("Backoff needs 0 < base <= maximum and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt``."""
        try:
            return min(self.maximum, self.base * self.factor ** max(attempt, 0))
        except OverflowError:
            return self.maximum

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """A random wait in ``[0, ceiling(attempt)]``; ``rand`` returns a float in ``[0, 1)``."""
        return rand() * self.ceiling(attempt)


class CircuitState(StrEnum):
    """Whether calls go through (closed), are refused (open) or one probe may test the server."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a server that keeps failing, and lets one probe find out when it is back.

    ``failure_threshold`` consecutive failures open the circuit. After ``cool_down`` seconds it
    is half-open: :meth:`allow` grants exactly one probe. The probe's success closes the circuit;
    its failure opens it for another cool-down.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cool_down: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cool_down < 0:
            raise ValueError("CircuitBreaker needs failure_threshold >= 1 and cool_down >= 0")
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        # The same sum as retry_after's: a caller woken when that reaches 0 finds it half-open
        # (cool-down elapsed, computed differently, can round to just under it).
        if self._opened_at + self.cool_down - self._clock() > 0:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def accepting(self) -> bool:
        """Whether :meth:`allow` would let a call through now (without taking the probe)."""
        state = self.state
        return state is CircuitState.CLOSED or (
            state is CircuitState.HALF_OPEN and not self._probing
        )

    def allow(self) -> bool:
        """Whether a call may go out now; in the half-open state only the first caller may."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the circuit half-opens; 0 when it is closed or already half-open."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cool_down - self._clock())

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        state = self.state
        if state is CircuitState.HALF_OPEN or (
            state is CircuitState.CLOSED and self._failures >= self.failure_threshold
        ):
            self.trip()

    def abandon(self) -> None:
        """A granted call ended without telling anything about the server (e.g. cancelled)."""
        self._probing = False

    def trip(self) -> None:
        """Open the circuit now, e.g. on an error that retrying soon cannot fix."""
        self._opened_at = self._clock()
        self._probing = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a caller retries: the backoff between attempts and when to stop trying for a while."""

    backoff: Backoff = field(default_factory=Backoff)
    failure_threshold: int = 5
    cool_down: float = 30.0

    def new_breaker(self, clock: Clock = time.monotonic) -> CircuitBreaker:
        return CircuitBreaker(
            failure_threshold=self.failure_threshold, cool_down=self.cool_down, clock=clock
        )


async def call_with_retry[T](
    operation: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    breaker: CircuitBreaker,
    retryable: tuple[type[Exception], ...] = (CannotConnect,),
    max_attempts: int | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``operation`` until it succeeds, backing off between failures and waiting out an
    open circuit.

    Errors that are not ``retryable`` propagate at once (the server answered, so the breaker
    counts them as a success). After ``max_attempts`` failed attempts (``None``: never) the last
    error propagates; a caller that needs a deadline wraps the call in ``asyncio.timeout``.
    """
    attempt = 0
    while True:
        if not breaker.allow():
            # Open: wait for the cool-down. Half-open with another caller's probe out: wait a
            # little and look again.
            await sleep(breaker.retry_after() or backoff.ceiling(0))
            continue
        try:
            result = await operation()
        except retryable:
            breaker.record_failure()
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            await sleep(backoff.delay(attempt - 1, rand))
        except Exception:
            breaker.record_success()
            raise
        except BaseException:
            breaker.abandon()
            raise
        else:
            breaker.record_success()
            return result
