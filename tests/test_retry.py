"""The retry policy: backoff with full jitter and the circuit breaker, on an injected clock."""

import asyncio
import random

import pytest

from custom_components.ha_ingestor.engine.influx.errors import CannotConnect, InvalidAuth
from custom_components.ha_ingestor.engine.retry import (
    Backoff,
    CircuitBreaker,
    CircuitState,
    RetryPolicy,
    Timer,
    call_with_retry,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """Read the state afresh (mypy would keep an earlier assert's narrowing of the property)."""
    return breaker.state


# Backoff


def test_backoff_ceiling_grows_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(base=1.0, maximum=10.0, factor=2.0)
    assert [backoff.ceiling(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_delay_is_full_jitter_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(base=1.0, maximum=10.0)
    assert backoff.delay(3, rand=lambda: 0.0) == 0.0
    assert backoff.delay(3, rand=lambda: 0.5) == 4.0
    assert backoff.delay(3, rand=lambda: 0.999) == pytest.approx(7.992)


def test_backoff_delays_spread_over_the_whole_range() -> None:
    backoff = Backoff(base=1.0, maximum=8.0)
    rng = random.Random(42)
    delays = [backoff.delay(3, rng.random) for _ in range(1000)]
    assert all(0.0 <= delay <= 8.0 for delay in delays)
    assert min(delays) < 0.5
    assert max(delays) > 7.5


def test_backoff_survives_a_huge_attempt_number() -> None:
    assert Backoff(base=0.5, maximum=60.0).ceiling(10_000) == 60.0


@pytest.mark.parametrize("kwargs", [{"base": 0.0}, {"base": 2.0, "maximum": 1.0}, {"factor": 0.5}])
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# CircuitBreaker


def test_breaker_starts_closed_and_allows_calls() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=10.0, clock=FakeClock())
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow()
    assert breaker.retry_after() == 0.0


def test_breaker_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=10.0, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is CircuitState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is CircuitState.OPEN
    assert not breaker.allow()
    assert not breaker.accepting


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=10.0, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.consecutive_failures == 2


def test_breaker_half_opens_after_the_cool_down_with_one_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=10.0, clock=clock)
    breaker.record_failure()
    clock.now += 9.5
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.retry_after() == pytest.approx(0.5)
    clock.now += 0.5
    assert state_of(breaker) is CircuitState.HALF_OPEN
    assert breaker.accepting
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.accepting


def test_the_breaker_is_half_open_once_retry_after_says_so() -> None:
    """Whoever sleeps retry_after() finds the probe free, whatever the float rounding."""
    now = 0.25
    breaker = CircuitBreaker(failure_threshold=1, cool_down=0.1, clock=lambda: now)
    breaker.trip()
    now = 0.3
    assert state_of(breaker) is CircuitState.OPEN
    now += breaker.retry_after()  # 0.35, where 0.35 - 0.25 is a hair under 0.1
    assert breaker.retry_after() == 0
    assert state_of(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow()


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=10.0, clock=clock)
    breaker.record_failure()
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_success()
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_a_failed_probe_opens_the_breaker_for_another_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cool_down=10.0, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.retry_after() == pytest.approx(10.0)


def test_an_abandoned_probe_can_be_granted_again() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_trip_opens_the_breaker_at_once() -> None:
    breaker = CircuitBreaker(failure_threshold=5, cool_down=10.0, clock=FakeClock())
    breaker.trip()
    assert state_of(breaker) is CircuitState.OPEN


def test_retry_policy_builds_breakers_with_its_settings() -> None:
    breaker = RetryPolicy(failure_threshold=2, cool_down=3.0).new_breaker(FakeClock())
    assert (breaker.failure_threshold, breaker.cool_down) == (2, 3.0)


# call_with_retry


async def test_call_with_retry_retries_connection_errors_until_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=10, cool_down=5.0, clock=clock)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise CannotConnect("down")
        return "ok"

    result = await call_with_retry(
        flaky, backoff=Backoff(base=1.0, maximum=4.0), breaker=breaker, sleep=clock.sleep
    )
    assert (result, calls) == ("ok", 4)
    assert state_of(breaker) is CircuitState.CLOSED
    assert 0 <= clock.now - 1000.0 <= 1.0 + 2.0 + 4.0


async def test_call_with_retry_waits_out_an_open_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cool_down=30.0, clock=clock)
    calls = 0

    async def down_twice() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise CannotConnect("down")

    await call_with_retry(
        down_twice,
        backoff=Backoff(base=0.1, maximum=0.1),
        breaker=breaker,
        sleep=clock.sleep,
        rand=lambda: 0.0,
    )
    assert calls == 3
    assert clock.now - 1000.0 == pytest.approx(30.0)


async def test_call_with_retry_raises_other_errors_at_once() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise InvalidAuth("no")

    with pytest.raises(InvalidAuth):
        await call_with_retry(refused, backoff=Backoff(), breaker=CircuitBreaker(clock=FakeClock()))
    assert calls == 1


async def test_call_with_retry_gives_up_after_max_attempts() -> None:
    clock = FakeClock()

    async def down() -> None:
        raise CannotConnect("down")

    with pytest.raises(CannotConnect):
        await call_with_retry(
            down,
            backoff=Backoff(base=0.1),
            breaker=CircuitBreaker(failure_threshold=100, clock=clock),
            max_attempts=3,
            sleep=clock.sleep,
        )


async def test_a_pause_on_the_timer_ends_when_its_time_is_up() -> None:
    clock = FakeClock()
    timer = Timer(monotonic=clock, sleep=clock.sleep)
    await timer.pause(5, asyncio.Event())
    assert clock.now == 1005.0


async def test_a_pause_ends_at_once_when_interrupted() -> None:
    never = asyncio.Event()
    timer = Timer(sleep=lambda _seconds: never.wait())
    interrupt = asyncio.Event()
    pausing = asyncio.create_task(timer.pause(5, interrupt))
    await asyncio.sleep(0)
    assert not pausing.done()
    interrupt.set()
    await asyncio.wait_for(pausing, 1)
    await timer.pause(5, interrupt)  # already set: no sleep at all
