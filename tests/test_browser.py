"""What a user sees in Home Assistant's real web UI, in headless Chromium (Selenium).

One real `hass` process (with the frontend) and a real influxd: the config flow with a bad
and a good URL, the options flow, a dry run from Developer tools with its answer, the shipped
dashboard before, during and after a migration, and a paused migration's repair issue fixed
from Settings > Repairs. Every step asserts on the text shown and saves a screenshot (the
folder is printed; ``HA_INGESTOR_SCREENSHOTS`` chooses it).
"""

from collections.abc import Iterator
import json
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

import aiohttp
import hass_frontend
import pytest
import yaml

from .browser import CHROMEDRIVER, CHROMIUM, Browser
from .helpers import run_in_own_loop
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port, running_influxd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import HassProcess, _write_config  # noqa: E402
from screenshot import _login  # noqa: E402

DASHBOARD = ROOT / "dashboards" / "migration.yaml"
DASHBOARD_PATH = "influxdb-migration"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """A real `hass` process, not the test instance: nothing to enable."""


@pytest.fixture(autouse=True)
def private_config_dir() -> None:
    """The real `hass` process has its own config directory."""


@pytest.fixture
def own_influxd() -> Iterator[InfluxServer]:
    with running_influxd(auth=True) as server:
        for database in ("home", "blocked"):
            server.create_database(database)
        yield server


@pytest.fixture
def screenshots() -> Path:
    folder = os.environ.get("HA_INGESTOR_SCREENSHOTS")
    path = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="ha-ingestor-browser-"))
    print(f"\nscreenshots: {path}")
    return path


def wait_for_state(hass: HassProcess, entity_id: str, wanted: set[str], within: float = 300) -> str:
    deadline = time.monotonic() + within
    state = "missing"
    while time.monotonic() < deadline:
        found = hass.api.states().get(entity_id)
        state = found["state"] if found else "missing"
        if state in wanted:
            return state
        time.sleep(0.5)
    raise AssertionError(f"{entity_id} is {state}, not one of {wanted}, after {within} s")


async def install_dashboard(base: str, token: str, config: dict[str, Any]) -> None:
    """Create a dashboard and save the shipped file as its whole configuration, as the raw
    configuration editor does."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http://", "ws://") + "/api/websocket") as ws,
    ):
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        assert (await ws.receive_json())["type"] == "auth_ok"
        commands: list[dict[str, Any]] = [
            {
                "type": "lovelace/dashboards/create",
                "url_path": "ha-ingestor",
                "title": "InfluxDB migration",
                "icon": "mdi:database-sync",
                "show_in_sidebar": True,
            },
            {"type": "lovelace/config/save", "url_path": "ha-ingestor", "config": config},
        ]
        for number, command in enumerate(commands, start=1):
            await ws.send_json({"id": number, **command})
            while (answer := await ws.receive_json()).get("id") != number:
                pass
            assert answer.get("success"), answer


def add_entry(hass: HassProcess, influxd: InfluxServer, database: str) -> None:
    """A second connection, added through the REST flow (the UI one is tested above)."""
    api = hass.api
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
            "url": influxd.url,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": database,
            "verify_ssl": True,
        },
    )
    assert result["type"] == "create_entry", result


def test_a_user_sets_up_migrates_and_fixes_a_paused_migration_in_the_web_ui(
    own_influxd: InfluxServer, screenshots: Path, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "run scripts/setup (it installs Debian's chromium)"
    assert Path(CHROMEDRIVER).exists(), "run scripts/setup (it installs chromium-driver)"
    port = free_port()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    _write_config(config_dir, port, frontend=True)
    hass = HassProcess(config_dir, port, tmp_path / "hass.log")
    hass.start()
    browser: Browser | None = None
    try:
        api = hass.api
        api.onboard()
        tokens = _login(api.base)
        browser = Browser(screenshots)
        browser.sign_in(api.base, tokens)

        # The config flow: a URL where nothing answers, then the right one.
        browser.open(f"{api.base}/config/integrations/dashboard/add?domain=ha_ingestor")
        browser.wait_for_text("Do you want to set up HA Ingestor?")
        browser.click("OK")
        browser.click("InfluxDB 1.x (database, username and password)")
        browser.wait_for_text("URL", "Database", "Verify the TLS certificate")
        browser.fill("URL", f"http://127.0.0.1:{free_port()}")
        browser.fill("Username", ADMIN_USER)
        browser.fill("Password", ADMIN_PASSWORD)
        browser.fill("Database", "home")
        browser.click("Submit")
        browser.wait_for_text("Could not reach InfluxDB at that URL")
        browser.screenshot("config-flow-unreachable")
        browser.fill("URL", own_influxd.url)
        browser.click("Submit")
        if _frontend_asks_to_name_created_devices():
            created = browser.wait_for_text("Device created", "Device name", "InfluxDB 1.x")
            browser.screenshot("config-flow-created")
            browser.click("Skip and finish")
        else:
            created = browser.wait_for_text("Created configuration for home on 127.0.0.1")
            browser.screenshot("config-flow-created")
        assert "InfluxDB 1.x" in created  # the device the entry created, by its model

        # The options flow: titled, in sections, saved.
        browser.open(f"{api.base}/config/integrations/integration/ha_ingestor")
        browser.wait_for_text("home on 127.0.0.1")
        browser.click("Configure")
        browser.wait_for_text("HA Ingestor options", "Recording", "Migration")
        browser.click("Migration")
        browser.wait_for_text("Wait before cleanup (hours)")
        browser.screenshot("options")
        browser.click("Submit")
        browser.wait_for_any("Options successfully saved", "Success")

        # A dry run from Developer tools > Actions, with its answer.
        api.call("generate_test_events", {"count": 3000, "days": 3, "seed": 5, "entity_count": 20})
        browser.set_local(
            "panel-dev-action-state-service-data",
            {"action": "ha_ingestor.start_migration", "data": {"dry_run": True}},
        )
        browser.set_local("panel-dev-action-state-yaml-mode", True)
        browser.open(f"{api.base}/developer-tools/action")
        browser.click("Perform action")
        answer = browser.wait_for_text("summary", "estimated_points", "estimated_backfill_seconds")
        assert "would be copied into" in answer
        browser.screenshot("dry-run-answer")

        # The dashboard, installed from the shipped file as it is.
        run_in_own_loop(
            install_dashboard(
                api.base, tokens["access_token"], yaml.safe_load(DASHBOARD.read_text())
            )
        )
        browser.open(f"{api.base}/ha-ingestor/{DASHBOARD_PATH}")
        idle = browser.wait_for_text("No migration yet", "Recording", "Spooled points")
        assert "Entity not available" not in idle
        assert "non-numeric" not in idle
        browser.screenshot("dashboard-idle")

        api.call("start_migration", {"cleanup_delay_hours": 1})
        waiting = browser.wait_for_text("Waiting for the cleanup", "Cleanup runs", within=300)
        assert "Entity not available" not in waiting
        browser.screenshot("dashboard-cleanup-wait")
        api.call("run_cleanup", {"delete_legacy_data": False})
        browser.wait_for_text("Migration complete", within=120)
        browser.screenshot("dashboard-complete")

        # A paused migration on a second connection, fixed from Repairs.
        add_entry(hass, own_influxd, "blocked")
        api.call(
            "generate_test_events",
            {"count": 3000, "days": 3, "seed": 6, "config_entry_id": _entry_id(hass, "blocked")},
        )
        start = int((time.time() - 4 * 86_400) * 1e9)
        own_influxd.write(
            "\n".join(
                f'sensor,entity_id=sensor.blocker value="text" {start + hour * 3_600_000_000_000}'
                for hour in range(24 * 5)
            ),
            "blocked",
        )
        api.call(
            "start_migration",
            {
                "config_entry_id": _entry_id(hass, "blocked"),
                "max_error_rate": 0.05,
                "rollback_threshold": 1,
            },
        )
        wait_for_state(hass, "sensor.ha_ingestor_migration_phase_2", {"paused"})
        browser.open(f"{api.base}/config/repairs")
        browser.wait_for_text("Migration paused")
        browser.click("Migration paused")
        cause = browser.wait_for_text("pause threshold", "Roll the migration back")
        assert "field type conflict" in cause
        browser.screenshot("repair-issue")
        browser.click("Roll the migration back")
        browser.wait_for_text("Your legacy history is not touched")
        browser.click("Submit")
        wait_for_state(hass, "sensor.ha_ingestor_migration_phase_2", {"rolled_back"}, within=120)
        browser.screenshot("repair-fixed")
        assert len(browser.saved) >= 9
    finally:
        if browser is not None:
            browser.close()
        hass.stop()


def _frontend_asks_to_name_created_devices() -> bool:
    """Whether the installed frontend ends a flow that created a device with "Device
    created" and a form to name it (2026.2's) instead of "Created configuration for …" and
    the device in a list (2025.4's), by its own English strings."""
    folder = hass_frontend.where() / "static" / "translations" / "config"
    (english,) = (path for path in folder.glob("en-*.json") if not path.name.startswith("en-GB"))
    strings = json.loads(english.read_text())  # keyed by dotted paths
    return "ui.panel.config.integrations.config_flow.device_created" in strings


def _entry_id(hass: HassProcess, database: str) -> str:
    entries = hass.api.request("GET", "/api/config/config_entries/entry?domain=ha_ingestor")
    return next(e["entry_id"] for e in entries if e["title"].startswith(f"{database} on"))
