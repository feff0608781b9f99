"""A real InfluxDB 1.x server (Debian's influxd) on free loopback ports, for tests and scripts."""

import base64
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-secret-Pa55"


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  max-body-size = 0

[continuous_queries]
  enabled = false

[logging]
  level = "error"
  suppress-logo = true
"""


@dataclass
class InfluxServer:
    """One influxd process with its own data directory; restartable on the same port."""

    root: Path
    auth: bool = True
    http_port: int = field(default_factory=free_port)
    rpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        config = self.root / "influxdb.conf"
        config.write_text(
            _CONFIG.format(
                root=self.root,
                http_port=self.http_port,
                rpc_port=self.rpc_port,
                auth="true" if self.auth else "false",
            )
        )
        log = (self.root / "influxd.log").open("ab")
        self.process = subprocess.Popen(
            [_influxd(), "-config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"influxd exited; see {self.root / 'influxd.log'}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("influxd did not answer /ping in time")
        if self.auth:
            # The first admin user may be created without credentials; later starts reuse it.
            with contextlib.suppress(urllib.error.HTTPError):
                self.query(
                    f"CREATE USER {ADMIN_USER} WITH PASSWORD '{ADMIN_PASSWORD}' "
                    "WITH ALL PRIVILEGES",
                    auth=False,
                )

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Kill the server abruptly (no clean shutdown)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # Blocking helpers for test set-up and assertions, never used by the integration.

    def query(
        self, q: str, db: str | None = None, *, auth: bool = True, epoch: str = "ns"
    ) -> list[dict[str, object]]:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(params).encode()
        )
        if auth:
            self._authorize(request)
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = json.loads(resp.read())
        results: list[dict[str, object]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']}")
        return results

    def series(self, q: str, db: str) -> list[dict[str, object]]:
        """Run one query and return its series (name, tags, columns, values)."""
        results = self.query(q, db)
        return list(results[0].get("series", [])) if results else []  # type: ignore[call-overload]

    def write(self, body: bytes | str, db: str, precision: str = "ns") -> None:
        if isinstance(body, str):
            body = body.encode()
        params = {"db": db, "precision": precision}
        request = urllib.request.Request(
            f"{self.url}/write?{urllib.parse.urlencode(params)}", data=body
        )
        self._authorize(request)
        with urllib.request.urlopen(request, timeout=60):
            pass

    def _authorize(self, request: urllib.request.Request) -> None:
        if self.auth:
            token = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


def _influxd() -> str:
    path = shutil.which("influxd") or "/usr/bin/influxd"
    if not Path(path).exists():
        raise RuntimeError("influxd is not installed; run scripts/setup")
    return path


@contextlib.contextmanager
def running_influxd(auth: bool = True) -> Iterator[InfluxServer]:
    """Start a throwaway influxd and stop it afterwards, removing its data."""
    with tempfile.TemporaryDirectory(prefix="ha-ingestor-influxd-") as root:
        server = InfluxServer(Path(root), auth=auth)
        server.start()
        try:
            yield server
        finally:
            server.stop()
