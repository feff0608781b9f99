"""The cleanup waits for its due time on Home Assistant's clock: not a moment sooner, across a
restart, and never after a rollback.

Time is the freezer's (ticking from the real time, so the writers and the real influxd work
as usual); the tests jump it to the due time instead of waiting for it.
"""

import asyncio
from datetime import datetime, timedelta
import json
from pathlib import Path
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.ha_ingestor.const import DOMAIN

from .helpers import entry_for, setup_entry
from .influx_server import InfluxServer
from .test_data_safety import ENTITIES, legacy_history, states_held
from .test_migration_services import call, entity_state, wait_for_phase

pytestmark = pytest.mark.freeze_time(tick=True)


async def waiting_for_the_cleanup(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> tuple[MockConfigEntry, set[tuple[str, int]], datetime]:
    """A migration that deletes the legacy history, waiting an hour for its cleanup; the
    history it copied and the due time."""
    entry = await setup_entry(hass, entry_for(influxd, database))
    await call(hass, "generate_test_events", count=1_000, days=1, seed=31, entity_count=ENTITIES)
    history = await legacy_history(influxd, database)
    await call(hass, "start_migration", delete_legacy_data=True, cleanup_delay_hours=1)
    await wait_for_phase(hass, entry.entry_id, {"cleanup"})
    due = entry.runtime_data.migration.cleanup_due
    assert due is not None
    assert timedelta(minutes=55) < due - dt_util.utcnow() <= timedelta(hours=1)
    return entry, history, due


async def time_passes_until(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass, moment)
    await hass.async_block_till_done()


async def nothing_happens(hass: HomeAssistant, entry: MockConfigEntry, phase: str) -> bool:
    """Whether the migration stays in ``phase`` for a few seconds without a cleanup: one that
    began would validate again first (the validation phase audited the only one so far)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await hass.async_block_till_done()
        if entity_state(hass, entry.entry_id, "migration_phase") != phase:
            return False
        if audited(hass, entry).count("validated") != 1:
            return False
        await asyncio.sleep(0.1)
    return True


def audited(hass: HomeAssistant, entry: MockConfigEntry) -> list[str]:
    storage = Path(hass.config.path(DOMAIN, entry.entry_id))
    lines = (storage / "audit.jsonl").read_text().splitlines()
    return [json.loads(line)["event"] for line in lines]


async def test_the_cleanup_does_not_run_before_its_due_time(
    hass: HomeAssistant, influxd: InfluxServer, database: str, freezer: FrozenDateTimeFactory
) -> None:
    entry, history, due = await waiting_for_the_cleanup(hass, influxd, database)

    await time_passes_until(hass, freezer, due - timedelta(minutes=1))

    assert await nothing_happens(hass, entry, "cleanup")
    assert entry.runtime_data.migration.cleanup_due == due
    assert "legacy_deleted" not in audited(hass, entry)
    assert history <= (await states_held(influxd, [database]))["legacy"]
    await hass.config_entries.async_unload(entry.entry_id)


async def test_the_cleanup_runs_at_its_due_time(
    hass: HomeAssistant, influxd: InfluxServer, database: str, freezer: FrozenDateTimeFactory
) -> None:
    entry, history, due = await waiting_for_the_cleanup(hass, influxd, database)

    await time_passes_until(hass, freezer, due)

    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    await hass.config_entries.async_unload(entry.entry_id)
    held = await states_held(influxd, [database])
    assert history.isdisjoint(held["legacy"])
    assert history <= held["optimized"]


async def test_a_restart_before_the_due_time_still_cleans_up_at_it(
    hass: HomeAssistant,
    influxd: InfluxServer,
    database: str,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    entry, history, due = await waiting_for_the_cleanup(hass, influxd, database)
    await hass.config_entries.async_unload(entry.entry_id)
    saved = hass_storage[f"{DOMAIN}.{entry.entry_id}.migration"]["data"]
    assert dt_util.parse_datetime(saved["cleanup_due"]) == due

    # Home Assistant comes back ten minutes before the due time: it waits for the same moment.
    freezer.move_to(due - timedelta(minutes=10))
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.migration.cleanup_due == due
    await time_passes_until(hass, freezer, due - timedelta(minutes=1))
    assert await nothing_happens(hass, entry, "cleanup")
    assert history <= (await states_held(influxd, [database]))["legacy"]

    await time_passes_until(hass, freezer, due)

    assert await wait_for_phase(hass, entry.entry_id, {"complete", "paused", "failed"}) == (
        "complete"
    )
    await hass.config_entries.async_unload(entry.entry_id)
    held = await states_held(influxd, [database])
    assert history.isdisjoint(held["legacy"])
    assert history <= held["optimized"]


async def test_a_rollback_before_the_due_time_cancels_the_cleanup(
    hass: HomeAssistant, influxd: InfluxServer, database: str, freezer: FrozenDateTimeFactory
) -> None:
    entry, history, due = await waiting_for_the_cleanup(hass, influxd, database)
    await call(hass, "rollback", reason="not yet")

    await time_passes_until(hass, freezer, due + timedelta(minutes=1))

    assert await nothing_happens(hass, entry, "rolled_back")
    assert "legacy_deleted" not in audited(hass, entry)
    await hass.config_entries.async_unload(entry.entry_id)
    held = await states_held(influxd, [database])
    assert history <= held["legacy"]
    assert held["optimized"] == set()
