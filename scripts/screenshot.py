"""Screenshot of the migration dashboard, rendered by Home Assistant's own frontend.

Starts influxd and `hass` (with the frontend, history and recorder) on free loopback ports with
a throwaway config directory, onboards, adds the integration, generates history, and starts a
migration that ends up waiting in its cleanup phase (progress 100 %, validated, real values on
every sensor). Then it installs `dashboards/migration.yaml` as a dashboard through the WebSocket
API, signs headless Chromium in, renders the dashboard and saves a PNG (docs/dashboard.png).
Everything it started is stopped again, also on errors.
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any
import urllib.request

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from demo import HASS, HomeAssistantApi, _write_config  # noqa: E402

from tests.influx_server import (  # noqa: E402
    InfluxServer,
    free_port,
)

DASHBOARD_YAML = ROOT / "dashboards" / "migration.yaml"
# The entity ids the shipped dashboard names (those of the first entry).
EXAMPLE_SLUG = "ha_ingestor"
DASHBOARD_URL_PATH = "ha-ingestor"
CHROMIUM = "/usr/bin/chromium"
# The user HomeAssistantApi.onboard (scripts/demo.py) creates.
USERNAME = "demo"
PASSWORD = "demo-password-123"

# Finds the Lovelace cards through every shadow root, and what they show.
PROBE_JS = """
(() => {
  const cards = {};
  let warnings = 0, spinners = 0, charts = 0, gauges = 0;
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      const tag = el.localName;
      if (tag.startsWith("hui-") && tag.endsWith("-card")) cards[tag] = (cards[tag] || 0) + 1;
      if (tag === "hui-warning" || tag === "hui-error-card") warnings += 1;
      if (tag === "ha-spinner" || tag === "ha-circular-progress") spinners += 1;
      if (tag === "ha-chart-base" && el.shadowRoot && el.shadowRoot.querySelector("canvas, svg"))
        charts += 1;
      if (tag === "ha-gauge" && el.shadowRoot && el.shadowRoot.querySelector("svg")) gauges += 1;
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return JSON.stringify({path: location.pathname, cards, warnings, spinners, charts, gauges});
})()
"""


def _wait_for_phase(
    api: HomeAssistantApi, slug: str, wanted: str, timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the migration phase sensor until it shows `wanted`; return all states then."""
    entity_id = f"sensor.{slug}_migration_phase"
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        states = api.states()
        phase = states[entity_id]["state"]
        if phase == wanted:
            return states
        if phase in {"rolled_back", "failed", "paused", "complete"}:
            break
        time.sleep(1)
    raise RuntimeError(f"migration did not reach {wanted!r} (phase {phase!r})")


def _login(base: str) -> dict[str, Any]:
    """Sign in like the frontend does (login flow, then code exchange): access + refresh token."""
    api = HomeAssistantApi(base)
    client_id = f"{base}/"
    flow = api.request(
        "POST",
        "/auth/login_flow",
        {"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
    )
    result = api.request(
        "POST",
        f"/auth/login_flow/{flow['flow_id']}",
        {"client_id": client_id, "username": USERNAME, "password": PASSWORD},
    )
    if result.get("type") != "create_entry":
        raise RuntimeError(f"login failed: {result}")
    tokens: dict[str, Any] = api.request(
        "POST",
        "/auth/token",
        {"grant_type": "authorization_code", "code": result["result"], "client_id": client_id},
        form=True,
    )
    # The frontend's localStorage "hassTokens" (home-assistant-js-websocket's AuthData).
    return {
        "hassUrl": base,
        "clientId": client_id,
        "access_token": tokens["access_token"],
        "token_type": "Bearer",
        "expires_in": tokens["expires_in"],
        "expires": int(time.time() * 1000) + tokens["expires_in"] * 1000,
        "refresh_token": tokens["refresh_token"],
    }


def _device_slug(states: dict[str, dict[str, Any]]) -> str:
    for entity_id in states:
        if (
            entity_id.startswith("sensor.")
            and entity_id.endswith("_migration_phase")
            and "ha_ingestor_test" not in entity_id
        ):
            return entity_id.removeprefix("sensor.").removesuffix("_migration_phase")
    raise RuntimeError("no migration phase sensor found")


def _dashboard_view(path: Path, slug: str, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The first view of the dashboard in `path`, for the entry whose ids start with `slug`."""
    text = path.read_text()
    if slug != EXAMPLE_SLUG:
        text = text.replace(f".{EXAMPLE_SLUG}_", f".{slug}_")
    view: dict[str, Any] = yaml.safe_load(text)["views"][0]
    missing = sorted(_entities(view) - set(states))
    if missing:
        raise RuntimeError(f"the dashboard names entities that do not exist: {missing}")
    return view


def _entities(node: Any) -> set[str]:
    """Every entity id a card configuration names."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "entity" and isinstance(value, str):
                found.add(value)
            else:
                found |= _entities(value)
    elif isinstance(node, list):
        for item in node:
            found |= _entities(item)
    return found


async def _install_dashboard(base: str, token: str, view: dict[str, Any]) -> None:
    """Create a storage dashboard and save the view into it, through HA's WebSocket API."""
    ws_url = base.replace("http://", "ws://") + "/api/websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        answer = await ws.receive_json()
        if answer.get("type") != "auth_ok":
            raise RuntimeError(f"WebSocket authentication failed: {answer}")
        commands: list[dict[str, Any]] = [
            {
                "type": "lovelace/dashboards/create",
                "url_path": DASHBOARD_URL_PATH,
                "title": "HA Ingestor",
                "icon": "mdi:database-sync",
                "show_in_sidebar": True,
            },
            {
                "type": "lovelace/config/save",
                "url_path": DASHBOARD_URL_PATH,
                "config": {"title": "HA Ingestor", "views": [view]},
            },
        ]
        for number, command in enumerate(commands, start=1):
            await ws.send_json({"id": number, **command})
            result = await ws.receive_json()
            while result.get("id") != number:
                result = await ws.receive_json()
            if not result.get("success"):
                raise RuntimeError(f"{command['type']} failed: {result.get('error')}")


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        command_id = self.next_id
        await self.ws.send_json({"id": command_id, "method": method, "params": params or {}})
        while True:
            message = await self.ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed during {method}")
            data = json.loads(message.data)
            if data.get("id") != command_id:
                continue  # an event
            if "error" in data:
                raise RuntimeError(f"{method}: {data['error']}")
            result: dict[str, Any] = data.get("result", {})
            return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


async def _render(
    devtools_port: int, url: str, tokens: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Sign the browser in, open the dashboard, wait until it has rendered, save the PNG."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json()
        page = next(target for target in targets if target["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.send("Page.enable")
            await tools.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": args.width,
                    "height": args.height,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            # The frontend reads its tokens from localStorage before it would redirect to the
            # login page; put them there before any of its scripts runs.
            await tools.send(
                "Page.addScriptToEvaluateOnNewDocument",
                {
                    "source": "localStorage.setItem('hassTokens', "
                    f"{json.dumps(json.dumps(tokens))});"
                },
            )
            await tools.send("Page.navigate", {"url": url})
            deadline = time.monotonic() + args.render_timeout
            probe: dict[str, Any] = {}
            previous: dict[str, Any] = {}
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                probe = json.loads(await tools.evaluate(PROBE_JS))
                if probe["path"].startswith("/auth"):
                    raise RuntimeError("the browser was sent to the login page")
                if _rendered(probe) and probe == previous:
                    break
                previous = probe
            else:
                raise RuntimeError(f"the dashboard did not render in time: {probe}")
            if probe["warnings"]:
                raise RuntimeError(f"the dashboard shows {probe['warnings']} warning cards")
            await asyncio.sleep(args.settle)  # gauge needle and chart animations
            shot = await tools.send("Page.captureScreenshot", {"format": "png"})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(base64.b64decode(shot["data"]))
    return probe


def _rendered(probe: dict[str, Any]) -> bool:
    """Cards are there, nothing is loading, gauges and history charts have drawn."""
    cards: dict[str, int] = probe["cards"]
    return (
        any(tag != "hui-card" for tag in cards)
        and not probe["spinners"]
        and probe["gauges"] >= cards.get("hui-gauge-card", 0)
        and probe["charts"] >= cards.get("hui-history-graph-card", 0)
    )


def _start_chromium(work: Path, port: int) -> subprocess.Popen[bytes]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing; run scripts/screenshot (it installs it)")
    profile = work / "chromium-profile"
    profile.mkdir()
    log = (work / "chromium.log").open("wb")
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited; see {work / 'chromium.log'}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=2),
        ):
            return process
        time.sleep(0.2)
    raise RuntimeError("chromium's DevTools endpoint did not come up")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop a process group this script started: SIGTERM, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ha-ingestor-screenshot-"))
    (work / "influxdb").mkdir()
    influx = InfluxServer(work / "influxdb", auth=True)
    config_dir = work / "config"
    config_dir.mkdir()
    port = free_port()
    _write_config(config_dir, port, frontend=True)
    configuration = config_dir / "configuration.yaml"
    # A country keeps HA's "country not configured" repair (a badge on Settings) out of the way.
    configuration.write_text(
        configuration.read_text().replace("homeassistant:\n", "homeassistant:\n  country: DE\n", 1)
    )
    hass: subprocess.Popen[bytes] | None = None
    chromium: subprocess.Popen[bytes] | None = None
    try:
        print("Starting InfluxDB and Home Assistant …", flush=True)
        influx.start()
        influx.create_database(args.database)
        with (work / "hass.log").open("wb") as log:
            hass = subprocess.Popen(
                [str(HASS), "-c", str(config_dir), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        api = HomeAssistantApi(f"http://127.0.0.1:{port}")
        api.wait_until_up(hass, timeout=300)
        api.onboard()
        entry = api.add_integration(influx, args.database)
        print(f"  {api.base}: integration added ({entry['title']})", flush=True)

        history = api.call(
            "generate_test_events",
            {
                "mode": "history",
                "count": args.events,
                "pattern": "mixed",
                "days": args.days,
                "seed": 42,
            },
        )
        api.call("generate_test_events", {"mode": "live", "count": args.live_events, "seed": 7})
        print(f"  generated {history['events']:,} history events", flush=True)

        slug = _device_slug(api.states())
        migration = api.call(
            "start_migration",
            {"strategy": "dual_write", "cleanup_delay_hours": 1, "batch_size": args.batch_size},
        )
        print(f"  migration {migration['migration_id']} started; waiting for cleanup", flush=True)
        states = _wait_for_phase(api, slug, "cleanup", timeout=args.timeout)
        # Live state changes keep being recorded (now in both layouts) while cleanup waits.
        api.call("generate_test_events", {"mode": "live", "count": args.live_events, "seed": 8})

        view = _dashboard_view(args.dashboard, slug, states)
        tokens = _login(api.base)
        asyncio.run(_install_dashboard(api.base, tokens["access_token"], view))
        url = f"{api.base}/{DASHBOARD_URL_PATH}/{view.get('path', 0)}"
        print(f"  dashboard at {url}", flush=True)

        devtools_port = free_port()
        chromium = _start_chromium(work, devtools_port)
        probe = asyncio.run(_render(devtools_port, url, tokens, args))
        print(f"  rendered cards: {probe['cards']}", flush=True)
        print(f"Saved {args.output} in {time.monotonic() - started:.0f} s", flush=True)
        return 0
    finally:
        _stop(chromium, timeout=10)
        _stop(hass, timeout=60)
        influx.stop()
        if args.keep_files:
            print(f"Files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into an exception so that `finally` stops what was started."""
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument(
        "--dashboard", type=Path, default=DASHBOARD_YAML, help="a Lovelace view (YAML)"
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--live-events", type=int, default=500)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database", default="home_assistant")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600, help="for the migration")
    parser.add_argument("--render-timeout", type=float, default=120)
    parser.add_argument("--settle", type=float, default=3, help="seconds for animations")
    parser.add_argument("--keep-files", action="store_true")
    args = parser.parse_args()
    args.output = args.output.resolve()
    args.dashboard = args.dashboard.resolve()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
