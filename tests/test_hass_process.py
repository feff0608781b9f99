"""A real `hass` process killed mid-backfill (SIGKILL: no shutdown, nothing flushed) and
started again: the migration resumes from the checkpoint in HA's Store and ends exact.

Uses the machinery of scripts/demo.py: influxd and `hass` on free loopback ports, onboarding,
the config flow and the service actions over HA's REST API.
"""

from collections.abc import Iterator
import json
from pathlib import Path
import sys
import time
from typing import Any

import aiohttp
import pytest

from .helpers import admin_client, run_in_own_loop
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port
from .test_migration_engine import Snapshot, assert_same, snapshot, transformed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from demo import HassProcess, _write_config, entity_state

DATABASE = "home"
HISTORY_EVENTS = 120_000
FINAL_PHASES = {"complete", "failed", "paused", "rolled_back"}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Home Assistant runs in its own process here; no in-process instance is needed."""


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    (tmp_path / "influxdb").mkdir()
    server = InfluxServer(tmp_path / "influxdb", auth=True)
    server.start()
    try:
        server.create_database(DATABASE)
        yield server
    finally:
        server.stop()


@pytest.fixture
def hass_process(tmp_path: Path) -> Iterator[HassProcess]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    port = free_port()
    _write_config(config_dir, port)
    process = HassProcess(config_dir, port, tmp_path / "hass.log")
    try:
        yield process
    finally:
        process.stop()


def migration_sensors(process: HassProcess) -> dict[str, str]:
    states = process.api.states()
    return {
        key: entity_state(states, f"_{key}")["state"]
        for key in ("migration_phase", "records_migrated", "data_integrity")
    }


def wait_for(
    process: HassProcess, check: Any, timeout: float, interval: float = 0.2
) -> dict[str, str]:
    """Poll the migration sensors over REST until ``check(sensors)`` holds."""
    deadline = time.monotonic() + timeout
    sensors: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            sensors = migration_sensors(process)
        except KeyError:  # entities not added yet after a start
            sensors = {}
        if sensors and check(sensors):
            return sensors
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s; last sensors {sensors}")


def stored_migration(config_dir: Path, entry_id: str) -> dict[str, Any]:
    """What HA's Store holds for the migration (what a restart resumes from)."""
    path = config_dir / ".storage" / f"ha_ingestor.{entry_id}.migration"
    state: dict[str, Any] = json.loads(path.read_text())["data"]["state"]
    return state


async def both_layouts(influx: InfluxServer) -> tuple[Snapshot, Snapshot]:
    async with aiohttp.ClientSession() as session:
        client = admin_client(session, influx, DATABASE)
        legacy = await snapshot(client, DATABASE, optimized=False)
        optimized = await snapshot(client, DATABASE, optimized=True)
    return legacy, optimized


def test_hass_killed_mid_backfill_resumes_from_its_checkpoint_and_ends_exact(
    influx: InfluxServer, hass_process: HassProcess
) -> None:
    hass_process.start()
    api = hass_process.api
    api.onboard()
    entry = api.add_integration(influx, DATABASE)
    history = api.call(
        "generate_test_events",
        {"mode": "history", "count": HISTORY_EVENTS, "pattern": "mixed", "days": 30},
    )
    assert history["events"] == HISTORY_EVENTS
    legacy_before, _ = run_in_own_loop(both_layouts(influx))
    total = len(legacy_before)
    # Small batches, one at a time: slow enough to be caught half-way.
    api.call(
        "start_migration",
        {"cleanup_delay_hours": 0, "batch_size": 200, "concurrent_batches": 1},
    )
    caught = wait_for(
        hass_process,
        lambda s: s["migration_phase"] == "backfill" and int(s["records_migrated"]) > total // 5,
        timeout=120,
        interval=0.1,
    )

    hass_process.kill()
    saved = stored_migration(hass_process.config_dir, entry["entry_id"])
    # It really was mid-backfill, and the Store holds a checkpoint part of the way.
    assert saved["phase"] == "backfill"
    assert 0 < int(caught["records_migrated"]) < total
    assert 0 < saved["records_migrated"] < total
    assert any(
        checkpoint["completed_until_ns"] < checkpoint["end_ns"]
        for checkpoint in saved["checkpoints"].values()
    )

    hass_process.start(timeout=120)
    resumed = wait_for(hass_process, lambda s: s["migration_phase"] != "unknown", timeout=120)
    # Resumed from the checkpoint, not from zero.
    assert resumed["migration_phase"] in ("backfill", "validation", "switchover", "cleanup")
    assert int(resumed["records_migrated"]) >= saved["records_migrated"]
    final = wait_for(hass_process, lambda s: s["migration_phase"] in FINAL_PHASES, timeout=180)
    assert final["migration_phase"] == "complete"
    assert float(final["data_integrity"]) == 100.0
    reports = sorted((hass_process.config_dir / "ha_ingestor").glob("*/migration_report_*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["validation"]["integrity_score"] == 1.0
    assert report["records_read"] == total
    assert report["records_failed"] == 0
    log = (hass_process.log_path).read_text()
    assert "Resuming migration" in log

    legacy, optimized = run_in_own_loop(both_layouts(influx))
    # The history is untouched; beside it, legacy holds only what HA itself recorded live
    # (its backup sensor, the shopping list…), which dual-write also put in the optimized layout.
    assert {key: legacy[key] for key in legacy_before} == legacy_before
    history_series = {(measurement, tags) for measurement, tags, _ in legacy_before}
    live_series = {(measurement, tags) for measurement, tags, _ in legacy.keys() - legacy_before}
    assert not live_series & history_series
    # Every legacy point has exactly its optimized twin, and nothing else is there.
    assert_same(optimized, transformed(legacy))
    # Counted once each, although the window in flight at the kill was copied twice.
    assert report["records_migrated"] == len(transformed(legacy_before))


def test_a_hostname_url_works_with_home_assistants_own_resolver(
    influx: InfluxServer, hass_process: HassProcess
) -> None:
    """The config flow with ``localhost`` in a real `hass`: HA's own DNS resolver (aiodns,
    beside zeroconf for .local names), which the in-process tests replace with phcc's."""
    hass_process.start()
    api = hass_process.api
    api.onboard()
    url = influx.url.replace("127.0.0.1", "localhost")
    assert "localhost" in url
    flow = api.request("POST", "/api/config/config_entries/flow", {"handler": "ha_ingestor"})
    flow = api.request(
        "POST",
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {"next_step_id": "influxdb_v1"},
    )
    result = api.request(
        "POST",
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {
            "url": url,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": DATABASE,
            "verify_ssl": True,
        },
    )
    assert result["type"] == "create_entry", result
    assert result["result"]["title"] == f"{DATABASE} on localhost"
    assert "Unexpected error" not in hass_process.log_path.read_text()
