"""The whole product end to end: real InfluxDB, real Home Assistant, one migration.

Starts influxd and `hass` on free loopback ports with a throwaway config directory, completes
onboarding and adds the integration through HA's HTTP API, generates history and live events,
migrates, follows the progress sensors, prints the report and stops everything it started.
Exits non-zero unless the migration completed with full integrity.
"""

import argparse
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
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
# The `hass` of the virtualenv running this script (each test stack has its own).
HASS = Path(sys.executable).with_name("hass")
sys.path.insert(0, str(ROOT))

from tests.influx_server import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    InfluxServer,
    free_port,
)

CLIENT_ID = "http://127.0.0.1/"
FINAL_PHASES = {"complete", "rolled_back", "failed", "paused"}


class HomeAssistantApi:
    """Just enough of HA's REST API for the demo."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, *, form: bool = False, timeout: float = 600
    ) -> Any:
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{method} {path}: HTTP {err.code}: {err.read().decode()}") from err
        return json.loads(text) if text else None

    def wait_until_up(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("Home Assistant exited during start-up")
            with contextlib.suppress(OSError, RuntimeError):
                self.request("GET", "/api/onboarding", timeout=5)
                return
            time.sleep(0.5)
        raise RuntimeError("Home Assistant did not start in time")

    def onboard(self) -> None:
        created = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": CLIENT_ID,
                "name": "Demo",
                "username": "demo",
                "password": "demo-password-123",
                "language": "en",
            },
        )
        tokens = self.request(
            "POST",
            "/auth/token",
            {
                "grant_type": "authorization_code",
                "code": created["auth_code"],
                "client_id": CLIENT_ID,
            },
            form=True,
        )
        self.token = tokens["access_token"]
        self.request("POST", "/api/onboarding/core_config", {})
        self.request("POST", "/api/onboarding/analytics", {})
        self.request(
            "POST",
            "/api/onboarding/integration",
            {"client_id": CLIENT_ID, "redirect_uri": CLIENT_ID},
        )

    def add_integration(self, influx: InfluxServer, database: str) -> dict[str, Any]:
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "ha_ingestor"})
        flow = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"next_step_id": "influxdb_v1"},
        )
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {
                "url": influx.url,
                "username": ADMIN_USER,
                "password": ADMIN_PASSWORD,
                "database": database,
                "verify_ssl": True,
            },
        )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"config flow did not create an entry: {result}")
        entry: dict[str, Any] = result["result"]
        return entry

    def call(self, service: str, data: dict[str, Any]) -> Any:
        answer = self.request("POST", f"/api/services/ha_ingestor/{service}?return_response", data)
        return answer.get("service_response")

    def states(self) -> dict[str, dict[str, Any]]:
        return {state["entity_id"]: state for state in self.request("GET", "/api/states")}


class HassProcess:
    """A real `hass` process on a config directory and a loopback port; it can be stopped
    abruptly (SIGKILL, no shutdown) and started again on the same directory and port."""

    def __init__(self, config_dir: Path, port: int, log_path: Path) -> None:
        self.config_dir = config_dir
        self.log_path = log_path
        self.api = HomeAssistantApi(f"http://127.0.0.1:{port}")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(HASS), "-c", str(self.config_dir), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        # Any HTTP answer will do: once onboarded, /api/onboarding is gone (404).
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError("Home Assistant did not start in time")
            time.sleep(0.5)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api.base}/api/", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """Stop at once: no shutdown, nothing flushed, like a power cut."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop cleanly (SIGTERM), killing it if it takes over a minute."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None


def entity_state(states: dict[str, dict[str, Any]], suffix: str) -> dict[str, Any]:
    """The state of the integration's entity whose id ends with ``suffix``."""
    for entity_id, state in states.items():
        if entity_id.endswith(suffix) and "ha_ingestor_test" not in entity_id:
            return state
    raise KeyError(suffix)


def _write_config(config_dir: Path, port: int, *, frontend: bool = False) -> None:
    """A minimal configuration.yaml (and our custom_components) for a `hass` process."""
    lines = [
        "homeassistant:",
        "  name: ha_ingestor demo",
        "  time_zone: UTC",
        "http:",
        "  server_host: 127.0.0.1",
        f"  server_port: {port}",
        "api:",
        "config:",
        "onboarding:",
        "logger:",
        "  default: warning",
        "  logs:",
        "    custom_components.ha_ingestor: info",
    ]
    if frontend:
        lines += ["frontend:", "lovelace:", "history:", "recorder:", "  purge_keep_days: 1"]
    (config_dir / "configuration.yaml").write_text("\n".join(lines) + "\n")
    (config_dir / "custom_components").symlink_to(ROOT / "custom_components")


def _progress_line(states: dict[str, dict[str, Any]]) -> str:
    phase = entity_state(states, "_migration_phase")["state"]
    progress = entity_state(states, "_migration_progress")["state"]
    throughput = entity_state(states, "_throughput")["state"]
    eta = entity_state(states, "_eta")["state"]
    migrated = entity_state(states, "_records_migrated")["state"]
    return (
        f"phase={phase:<11} progress={progress:>6}%  migrated={migrated:>9}  "
        f"throughput={throughput:>9} points/s  eta={eta}"
    )


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="ha-ingestor-demo-"))
    influx = InfluxServer(work / "influxdb", auth=True)
    (work / "influxdb").mkdir()
    config_dir = work / "config"
    config_dir.mkdir()
    port = free_port()
    _write_config(config_dir, port, frontend=args.keep_running)
    hass = HassProcess(config_dir, port, work / "hass.log")
    started = time.monotonic()
    try:
        print(f"Starting InfluxDB 1.x (influxd) in {work / 'influxdb'} …", flush=True)
        influx.start()
        influx.create_database(args.database)
        print(f"  InfluxDB at {influx.url}", flush=True)

        print("Starting Home Assistant …", flush=True)
        hass.start(timeout=300)
        api = hass.api
        print(f"  Home Assistant at {api.base}", flush=True)
        api.onboard()
        print("  onboarding done (user demo / demo-password-123)", flush=True)

        entry = api.add_integration(influx, args.database)
        print(f"  integration added: {entry['title']}", flush=True)

        history = api.call(
            "generate_test_events",
            {"mode": "history", "count": args.events, "pattern": "mixed", "days": args.days},
        )
        print(
            f"Generated {history['events']:,} history events over {args.days} days "
            f"({history['entities']} entities) in {history['seconds']} s "
            f"({history['events_per_second']:,} events/s)",
            flush=True,
        )
        live = api.call("generate_test_events", {"mode": "live", "count": args.live_events})
        print(f"Fired {live['events']:,} live state changes through Home Assistant", flush=True)

        plan = api.call(
            "start_migration",
            {"strategy": args.strategy, "cleanup_delay_hours": 0, "dry_run": True},
        )
        print(
            f"Plan: {plan['estimated_points']:,} points in {len(plan['measurements'])} "
            f"measurements, phases {' → '.join(plan['phases'])}",
            flush=True,
        )
        started_migration = api.call(
            "start_migration",
            {"strategy": args.strategy, "cleanup_delay_hours": 0, "batch_size": 5000},
        )
        print(f"Migration {started_migration['migration_id']} started", flush=True)

        deadline = time.monotonic() + args.timeout
        phase = ""
        while time.monotonic() < deadline:
            states = api.states()
            phase = entity_state(states, "_migration_phase")["state"]
            print("  " + _progress_line(states), flush=True)
            if phase in FINAL_PHASES:
                break
            time.sleep(args.poll)
        # Live events keep flowing into both layouts during the migration.
        api.call("generate_test_events", {"mode": "live", "count": 200, "seed": 7})

        states = api.states()
        report_files = sorted((config_dir / "ha_ingestor").glob("*/migration_report_*.json"))
        report = json.loads(report_files[-1].read_text()) if report_files else {}
        validation = report.get("validation") or {}
        integrity = validation.get("integrity_score")
        improvement = entity_state(states, "_query_time_improvement")["state"]
        print()
        print("Migration report")
        print(f"  phase                 {phase}")
        print(f"  points migrated       {report.get('records_migrated')}")
        print(f"  points failed         {report.get('records_failed')}")
        print(f"  integrity             {integrity}")
        print(f"  query-time improvement {improvement} %")
        for timing in validation.get("query_timings", []):
            print(
                f"    {timing['name']:<28} legacy {timing['legacy_ms']:.1f} ms"
                f"  optimized {timing['optimized_ms']:.1f} ms"
            )
        print(f"  duration              {report.get('duration_seconds')} s")
        print(f"  report                {report_files[-1] if report_files else None}")
        print(f"  total demo time       {time.monotonic() - started:.0f} s")
        ok = phase == "complete" and integrity == 1.0
        print("RESULT: " + ("migration complete with full integrity" if ok else "FAILED"))
        if args.keep_running:
            print(f"Home Assistant stays up at {api.base} (Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                assert hass.process is not None
                hass.process.wait()
        return 0 if ok else 1
    finally:
        hass.stop()
        influx.stop()
        if args.keep_files:
            print(f"Files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--live-events", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--strategy", default="dual_write")
    parser.add_argument("--database", default="home_assistant")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--poll", type=float, default=2.0)
    parser.add_argument("--keep-files", action="store_true")
    parser.add_argument("--keep-running", action="store_true")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
