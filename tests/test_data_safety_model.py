"""The data-safety promise as a stateful property, through Home Assistant, on a real influxd.

A hypothesis ``RuleBasedStateMachine`` fires state changes, starts migrations (any strategy,
time range, with or without deleting legacy data, cleanup now or later), pauses, resumes,
validates, rolls back, stops and starts influxd, makes the server refuse deletes for a while,
reloads the entry, points the migration target at a database holding other data, and makes
the cleanup due, in any order. After every step:

- every state change fired, and every point of the legacy history that existed before, is in
  some layout (legacy or optimized) of some database that still exists;
- a measurement that is not Home Assistant's, in the source database, and a database of the
  user's own are untouched.

The rules run in a worker thread and hand their coroutines to Home Assistant's loop, so the
integration runs exactly as it does in Home Assistant (its tasks go on between steps). CI
runs a few examples; ``scripts/explore-data-safety`` runs hundreds and prints what it
explored. Set ``HA_INGESTOR_MODEL_EXAMPLES`` and ``HA_INGESTOR_MODEL_STEPS`` to choose.
"""

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import timedelta
import functools
import itertools
import os
from typing import Any, ClassVar
from urllib.parse import parse_qs

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor import migration, recording as ingest
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.line_protocol import to_time_ns
from custom_components.ha_ingestor.engine.migration import removal
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.writer import PointWriter

from .faulty_proxy import FaultyProxy
from .helpers import entry_for, stored_points
from .influx_server import InfluxServer, running_influxd
from .test_data_safety import layout_of

EXAMPLES = int(os.environ.get("HA_INGESTOR_MODEL_EXAMPLES", "3"))
STEPS = int(os.environ.get("HA_INGESTOR_MODEL_STEPS", "10"))
FAST = RetryPolicy(backoff=Backoff(base=0.05, maximum=0.3), failure_threshold=3, cool_down=0.5)
SENTINEL = "sentinel,owner=someone_else value=42 1700000000000000000"
ENTITIES = ("sensor.model_power", "sensor.model_temperature", "sensor.model_mode")
# What the run explored, printed at the end (scripts/explore-data-safety reads it).
EXPLORED: Counter[str] = Counter()
_databases = itertools.count()

type StateKey = tuple[str, int]


def _is_delete(path: str, query: str, body: bytes) -> bool:
    statement = " ".join(parse_qs(body.decode(errors="replace")).get("q", []))
    statement += " ".join(parse_qs(query).get("q", []))
    return path == "/query" and statement.lstrip().upper().startswith(("DELETE", "DROP"))


class Harness:
    """What the machine acts on: Home Assistant, the server, the proxy in front of it."""

    def __init__(
        self, hass: HomeAssistant, influxd: InfluxServer, proxy: FaultyProxy, loop: Any
    ) -> None:
        self.hass = hass
        self.influxd = influxd
        self.proxy = proxy
        self.loop = loop

    def run[T](self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float = 300) -> T:
        """Run a coroutine on Home Assistant's loop and wait for it (from the worker thread)."""
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)


class MigrationModel(RuleBasedStateMachine):
    """Random operations on a real integration; the promise holds after each one."""

    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.database = f"model_{next(_databases)}"
        self.sentinel_database = f"{self.database}_users_own"
        self.entry: MockConfigEntry | None = None
        self.fired: set[StateKey] = set()
        self.history: set[StateKey] = set()
        self.server_up = True
        self.deletes_fail = False
        self.values = itertools.count()
        self.unsubscribe: Callable[[], None] | None = None

    # Set-up and tear-down.

    @initialize()
    def set_up(self) -> None:
        influxd = self.h.influxd
        influxd.create_database(self.database)
        influxd.create_database(self.sentinel_database)
        influxd.write(SENTINEL, self.database)
        influxd.write(SENTINEL, self.sentinel_database)
        entry = entry_for(influxd, self.database)
        self.entry = MockConfigEntry(
            domain=DOMAIN,
            title=entry.title,
            data={**entry.data, "url": self.h.proxy.url},
            options={},
            unique_id=f"{self.h.proxy.url}/{self.database}",
        )

        async def start() -> None:
            hass = self.h.hass
            assert self.entry is not None
            self.entry.add_to_hass(hass)
            await hass.config_entries.async_setup(self.entry.entry_id)
            await hass.services.async_call(
                DOMAIN,
                "generate_test_events",
                {
                    "count": 400,
                    "days": 3,
                    "seed": 7,
                    "entity_count": 20,
                    "config_entry_id": self.entry.entry_id,
                },
                blocking=True,
                return_response=True,
            )

            @callback
            def changed(event: Event[EventStateChangedData]) -> None:
                state = event.data["new_state"]
                if state is not None and state.entity_id in ENTITIES:
                    self.fired.add((state.entity_id, to_time_ns(event.time_fired)))

            self.unsubscribe = hass.bus.async_listen("state_changed", changed)

        self.h.run(start)
        self.history = self._held()["legacy"]
        assert len(self.history) > 300

    def teardown(self) -> None:
        h = self.h
        try:
            h.proxy.fail_when = None
            if not self.server_up:
                h.influxd.start()
                self.server_up = True
            if self.entry is not None and self.entry.state is ConfigEntryState.LOADED:
                self._settle()
                self.check_promise()

                async def stop() -> None:
                    assert self.entry is not None
                    await h.hass.config_entries.async_remove(self.entry.entry_id)

                h.run(stop)
        finally:
            if self.unsubscribe is not None:
                h.run(self._unsubscribe)
            for database in self._databases():
                h.influxd.drop_database(database)

    async def _unsubscribe(self) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None

    # Rules.

    @rule(entity=st.sampled_from(ENTITIES), count=st.integers(1, 4))
    def fire_states(self, entity: str, count: int) -> None:
        async def fire() -> None:
            for _ in range(count):
                value = next(self.values)
                state = f"mode_{value % 3}" if entity.endswith("mode") else str(value)
                self.h.hass.states.async_set(entity, state, {"unit_of_measurement": "W"})
                await asyncio.sleep(0.002)  # distinct times

        self.h.run(fire)
        EXPLORED["fire_states"] += 1

    @rule(
        strategy=st.sampled_from(["immediate", "gradual", "dual_write", "blue_green"]),
        delete_legacy=st.booleans(),
        cleanup_now=st.booleans(),
        time_range=st.sampled_from(["all", "start", "end", "both"]),
    )
    def start_migration(
        self, strategy: str, delete_legacy: bool, cleanup_now: bool, time_range: str
    ) -> None:
        now = dt_util.utcnow()
        data: dict[str, Any] = {
            "strategy": strategy,
            "delete_legacy_data": delete_legacy,
            "cleanup_delay_hours": 0 if cleanup_now else 1,
            "migration_window_hours": 1,
            "batch_size": 200,
        }
        if time_range in ("start", "both"):
            data["start_time"] = (now - timedelta(days=2)).isoformat()
        if time_range in ("end", "both"):
            data["end_time"] = (now - timedelta(days=1)).isoformat()
        self._act("start_migration", data)

    @rule(
        action=st.sampled_from(
            ["pause_migration", "resume_migration", "validate_migration", "rollback", "keep"]
        )
    )
    def control(self, action: str) -> None:
        """Pause, resume, validate, or roll back (removing what was migrated, or keeping it)."""
        if action in ("rollback", "keep"):
            self._act("rollback", {"keep_target_data": action == "keep", "reason": "model"})
        else:
            self._act(action)

    @rule()
    def make_the_cleanup_due(self) -> None:
        async def due() -> None:
            assert self.entry is not None
            if self.entry.state is ConfigEntryState.LOADED:
                await self.entry.runtime_data.migration.async_run_cleanup_now()

        self.h.run(due)
        EXPLORED["make_the_cleanup_due"] += 1

    @rule(action=st.sampled_from(["stop", "kill", "start"]))
    def influxd(self, action: str) -> None:
        """Stop influxd cleanly or kill it, or start it again."""
        if action == "start" and not self.server_up:
            self.h.influxd.start()
            self.server_up = True
        elif action != "start" and self.server_up:
            (self.h.influxd.kill if action == "kill" else self.h.influxd.stop)()
            self.server_up = False
        EXPLORED[f"influxd_{action}"] += 1

    @rule(fail=st.booleans())
    def refuse_deletes(self, fail: bool) -> None:
        self.deletes_fail = fail
        self.h.proxy.fail_when = _is_delete if fail else None
        EXPLORED[f"refuse_deletes_{fail}"] += 1

    @rule()
    def reload_entry(self) -> None:
        async def reload() -> None:
            assert self.entry is not None
            await self.h.hass.config_entries.async_reload(self.entry.entry_id)

        self.h.run(reload)
        EXPLORED["reload_entry"] += 1

    @rule(users_own=st.booleans())
    def choose_the_target(self, users_own: bool) -> None:
        """Point the migration target at the user's own database (or back to the default)."""

        async def choose() -> None:
            assert self.entry is not None
            options = dict(self.entry.options)
            section = dict(options.get("migration", {}))
            if users_own:
                section["target_database"] = self.sentinel_database
            else:
                section.pop("target_database", None)
            options["migration"] = section
            self.h.hass.config_entries.async_update_entry(self.entry, options=options)
            await self.h.hass.async_block_till_done()

        self.h.run(choose)
        EXPLORED["choose_the_target"] += 1

    @rule(seconds=st.sampled_from([0.2, 1.0, 3.0]))
    def let_time_pass(self, seconds: float) -> None:
        self.h.run(functools.partial(asyncio.sleep, seconds))
        EXPLORED["let_time_pass"] += 1

    # The promise.

    @invariant()
    def check_promise(self) -> None:
        if self.entry is None or not self.server_up:
            return
        self._settle()
        held = self._held()
        present = held["legacy"] | held["optimized"]
        missing = (self.history | self.fired) - present
        assert not missing, f"{len(missing)} state changes lost, e.g. {sorted(missing)[:3]}"
        for database in (self.database, self.sentinel_database):
            rows = self.h.influxd.series('SELECT * FROM "sentinel"', database)
            assert rows, f"the sentinel in {database} is gone"
            assert rows[0]["values"] == [[1700000000000000000, "someone_else", 42]], rows
        EXPLORED["checks"] += 1
        EXPLORED["states_checked"] += len(self.history | self.fired)
        if self.entry.state is ConfigEntryState.LOADED:
            EXPLORED[f"checked in phase {self.entry.runtime_data.migration.phase}"] += 1

    # Helpers.

    def _act(self, service: str, data: dict[str, Any] | None = None) -> None:
        async def call() -> str:
            assert self.entry is not None
            if self.entry.state is not ConfigEntryState.LOADED:
                return "not loaded"
            try:
                await self.h.hass.services.async_call(
                    DOMAIN,
                    service,
                    {**(data or {}), "config_entry_id": self.entry.entry_id},
                    blocking=True,
                    return_response=True,
                )
            except HomeAssistantError as err:  # refused or failed: both are fine here
                return getattr(err, "translation_key", None) or type(err).__name__
            return "done"

        EXPLORED[f"{service}: {self.h.run(call)}"] += 1

    def _settle(self, within: float = 60.0) -> None:
        """Wait until the writers hold nothing (the server is up, so they deliver)."""

        async def settle() -> None:
            assert self.entry is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while loop.time() < deadline:
                if self.entry.state is not ConfigEntryState.LOADED:
                    return
                stats = self.entry.runtime_data.ingestion.stats
                if stats.queue_depth == 0 and stats.spooled_points == 0:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"the writers still hold points: {stats}")

        self.h.run(settle)

    def _databases(self) -> list[str]:
        (result,) = self.h.influxd.query("SHOW DATABASES")
        names = {row[0] for series in result.get("series", []) for row in series["values"]}  # type: ignore[attr-defined]
        return sorted(name for name in names if name.startswith(self.database))

    def _held(self) -> dict[str, set[StateKey]]:
        async def read() -> dict[str, set[StateKey]]:
            held: dict[str, set[StateKey]] = {"legacy": set(), "optimized": set()}
            for database in self._databases():
                for points in (await stored_points(self.h.influxd, database)).values():
                    for point in points:
                        if (found := layout_of(point)) is not None:
                            held[found[0]].add((found[1], point.time_ns))
            return held

        return self.h.run(read)


@pytest.fixture
def own_influxd() -> Any:
    """A server this test may stop and start without disturbing the others."""
    with running_influxd(auth=True) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "LIVE_RETRY", FAST)
    monkeypatch.setattr(
        ingest,
        "PointWriter",
        functools.partial(PointWriter, spool_interval=1.0, stats_interval=0.1),
    )
    monkeypatch.setattr(removal, "DELETE_BACKOFF", Backoff(base=0.05, maximum=0.2))
    monkeypatch.setattr(removal, "DELETE_ATTEMPTS", 3)
    monkeypatch.setattr(migration, "_REMOVAL_RETRY_SECONDS", 0.5)


async def test_no_sequence_of_operations_loses_a_state_change_or_touches_foreign_data(
    hass: HomeAssistant, own_influxd: InfluxServer
) -> None:
    proxy = FaultyProxy(own_influxd.url)
    await proxy.start()
    MigrationModel.harness = Harness(hass, own_influxd, proxy, asyncio.get_running_loop())
    EXPLORED.clear()
    try:
        await hass.async_add_executor_job(
            functools.partial(
                run_state_machine_as_test,
                MigrationModel,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    derandomize=os.environ.get("HA_INGESTOR_MODEL_RANDOM") is None,
                    suppress_health_check=list(HealthCheck),
                    print_blob=True,
                ),
            )
        )
    finally:
        await proxy.stop()
    steps = sum(
        n
        for name, n in EXPLORED.items()
        if name not in ("checks", "states_checked") and not name.startswith("checked in")
    )
    print(f"\ndata-safety model: {steps} steps, {EXPLORED['checks']} checks")
    for name, count in sorted(EXPLORED.items()):
        print(f"  {name}: {count}")
    assert EXPLORED["checks"] >= EXAMPLES
    assert steps >= EXAMPLES
