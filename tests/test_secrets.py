"""Credentials stay in the config entry: never in logs, files, events, states or diagnostics;
and TLS certificates are verified unless the user explicitly turns it off.

The leak tests run a whole life: config flow (a wrong password first), recording, refused
points, an outage with a spool on disk, a password change that needs reauth (a wrong one
first), a migration with its audit log and report, diagnostics. Then everything the
integration wrote or said is searched for the secrets, including the Basic auth header form.
"""

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
import functools
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import ipaddress
import logging
from pathlib import Path
import ssl
import threading
import time
from typing import Any
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from homeassistant import config_entries
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import MATCH_ALL
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
import orjson
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
import voluptuous as vol

from custom_components.ha_ingestor import connection, recording as ingest
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.retry import Backoff, RetryPolicy
from custom_components.ha_ingestor.engine.writer import PointWriter

from .conftest import V2_ORG, V2_TOKEN
from .helpers import count, eventually
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, running_influxd
from .influx_v2_emulator import InfluxV2Emulator

USER = "recorder"
PASSWORD = "pw-Zq8%never-log-this"
WRONG_PASSWORD = "pw-Kx3%typo-also-secret"
NEW_PASSWORD = "pw-Rt5%rotated-secret"
WRONG_TOKEN = "wrong-token-Hv7%secret"
NEW_TOKEN = "rotated-token-Pp2%secret"
FAST = RetryPolicy(backoff=Backoff(base=0.05, maximum=0.3), failure_threshold=3, cool_down=0.5)


def leak_forms(*secrets: str) -> list[str]:
    """The secrets as text, and as the Basic auth header that carries them."""
    forms = list(secrets)
    for secret in secrets:
        forms.append(base64.b64encode(f"{USER}:{secret}".encode()).decode())
    return forms


@pytest.fixture(autouse=True)
def fast_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        ingest,
        "PointWriter",
        functools.partial(PointWriter, retry=FAST, spool_interval=1.0, stats_interval=0.1),
    )


@pytest.fixture
def own_influxd() -> Iterator[InfluxServer]:
    """A server with a non-default user; this test stops it and changes the password."""
    with running_influxd(auth=True) as server:
        server.create_database("home")
        server.query(f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES")
        yield server


def record_everything(hass: HomeAssistant) -> list[str]:
    """Every bus event from now on, as text."""
    seen: list[str] = []

    @callback
    def _record(event: Event) -> None:
        seen.append(f"{event.event_type} {event.data!r}")

    hass.bus.async_listen(MATCH_ALL, _record)
    return seen


def written_files(hass: HomeAssistant) -> dict[str, str]:
    """Every file the integration wrote under the config directory (Store files included).

    core.config_entries is left out: it is where Home Assistant keeps the credentials.
    """
    files = {}
    roots = [Path(hass.config.path(DOMAIN)), Path(hass.config.path(".storage"))]
    for root in roots:
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file() and path.name != "core.config_entries":
                files[str(path)] = path.read_bytes().decode(errors="replace")
    return files


def stores(hass_storage: dict[str, Any]) -> str:
    """HA Store data (kept in memory by the test harness), except the config entries."""
    return repr({k: v for k, v in hass_storage.items() if k != "core.config_entries"})


def assert_nowhere(secrets: list[str], **haystacks: str) -> None:
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"


async def submit_v1(hass: HomeAssistant, server: InfluxServer, password: str) -> Any:
    flows = hass.config_entries.flow
    result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v1"})
    return await flows.async_configure(
        result["flow_id"],
        {"url": server.url, "username": USER, "password": password, "database": "home"},
    )


async def test_passwords_never_leave_the_config_entry(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_storage: dict[str, Any],
    own_influxd: InfluxServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events = record_everything(hass)
    captured: dict[str, str] = {}

    # Config flow: a typo first, then the right password.
    result = await submit_v1(hass, own_influxd, WRONG_PASSWORD)
    assert result["errors"] == {"base": "invalid_auth"}
    hass.config_entries.flow.async_abort(result["flow_id"])
    result = await submit_v1(hass, own_influxd, PASSWORD)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    assert entry.data["password"] == PASSWORD

    # Recording, with refused points (measurement "clash" already holds a string "value").
    seed_ns = time.time_ns() - 60_000_000_000
    own_influxd.write(f'clash,domain=sensor,entity_id=seed value="text" {seed_ns}', "home")
    for n in range(20):
        hass.states.async_set("sensor.energy", str(n), {"unit_of_measurement": "kWh"})
        hass.states.async_set("sensor.power", str(n), {"unit_of_measurement": "clash"})
    await eventually(hass, lambda: count(own_influxd, "home", "kWh") == 20)
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.dead_letter_count == 20)

    # An outage: points go to the spool on disk, which is read while it holds them.
    await hass.async_add_executor_job(own_influxd.stop)
    for n in range(20, 40):
        hass.states.async_set("sensor.energy", str(n), {"unit_of_measurement": "kWh"})
    await eventually(hass, lambda: entry.runtime_data.ingestion.stats.spooled_points == 20)
    spooled = {k: v for k, v in written_files(hass).items() if "/spool-" in k}
    assert spooled
    captured |= spooled
    await hass.async_add_executor_job(own_influxd.start)
    await eventually(hass, lambda: count(own_influxd, "home", "kWh") == 40)

    # The password is changed on the server: writes are refused, a reauth flow starts.
    own_influxd.query(f"SET PASSWORD FOR {USER} = '{NEW_PASSWORD}'")
    hass.states.async_set("sensor.energy", "40", {"unit_of_measurement": "kWh"})
    flows = hass.config_entries.flow
    await eventually(hass, lambda: flows.async_progress_by_handler(DOMAIN))
    (flow,) = flows.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == SOURCE_REAUTH
    result = await flows.async_configure(flow["flow_id"], {"password": WRONG_PASSWORD})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await flows.async_configure(flow["flow_id"], {"password": NEW_PASSWORD})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await eventually(hass, lambda: count(own_influxd, "home", "kWh") == 41)

    # A migration: audit log, report, stored state.
    await hass.services.async_call(
        DOMAIN, "generate_test_events", {"count": 300, "days": 1}, blocking=True
    )
    await hass.services.async_call(
        DOMAIN,
        "start_migration",
        {"strategy": "immediate", "cleanup_delay_hours": 0},
        blocking=True,
    )
    migration = entry.runtime_data.migration
    await eventually(hass, lambda: migration.phase.value in ("complete", "failed", "paused"))
    assert migration.phase.value == "complete"

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    files = written_files(hass) | captured
    storage = hass.config.path(DOMAIN, entry.entry_id)
    assert {Path(f).name for f in files if f.startswith(storage)} >= {
        "audit.jsonl",
        "dead_letter.jsonl",
        f"migration_report_{migration.state.migration_id}.json",
    }
    states = [f"{s.entity_id} {s.state} {s.attributes!r}" for s in hass.states.async_all()]
    secrets = leak_forms(PASSWORD, WRONG_PASSWORD, NEW_PASSWORD)
    assert "InfluxDB database home is unavailable" in caplog.text  # the logs did talk
    assert f"{DOMAIN}.{entry.entry_id}.migration" in hass_storage  # the migration was stored
    assert_nowhere(
        secrets,
        logs=caplog.text,
        stores=stores(hass_storage),
        diagnostics=orjson.dumps(diagnostics).decode(),
        events="\n".join(events),
        states="\n".join(states),
        **files,
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_tokens_never_leave_the_config_entry(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_storage: dict[str, Any],
    v2_emulator: InfluxV2Emulator,
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events = record_everything(hass)
    flows = hass.config_entries.flow

    async def submit(token: str) -> Any:
        result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
        result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v2"})
        return await flows.async_configure(
            result["flow_id"],
            {"url": v2_emulator.url, "token": token, "organization": V2_ORG, "bucket": database},
        )

    result = await submit(WRONG_TOKEN)
    assert result["errors"] == {"base": "invalid_auth"}
    flows.async_abort(result["flow_id"])
    result = await submit(V2_TOKEN)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    for n in range(10):
        hass.states.async_set("sensor.v2", str(n), {"unit_of_measurement": "W"})
    await eventually(hass, lambda: count(v2_emulator.backend, database, "W") == 10)

    # The token is revoked: reauth, a wrong token first.
    v2_emulator.token = NEW_TOKEN
    hass.states.async_set("sensor.v2", "10", {"unit_of_measurement": "W"})
    await eventually(hass, lambda: flows.async_progress_by_handler(DOMAIN))
    (flow,) = flows.async_progress_by_handler(DOMAIN)
    result = await flows.async_configure(flow["flow_id"], {"token": WRONG_TOKEN})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await flows.async_configure(flow["flow_id"], {"token": NEW_TOKEN})
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await eventually(hass, lambda: count(v2_emulator.backend, database, "W") == 11)

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["token"] == "**REDACTED**"
    states = [f"{s.entity_id} {s.state} {s.attributes!r}" for s in hass.states.async_all()]
    assert_nowhere(
        [V2_TOKEN, WRONG_TOKEN, NEW_TOKEN],
        logs=caplog.text,
        stores=stores(hass_storage),
        diagnostics=orjson.dumps(diagnostics).decode(),
        events="\n".join(events),
        states="\n".join(states),
        **written_files(hass),
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


# TLS verification.


@pytest.mark.parametrize("step", ["influxdb_v1", "influxdb_v2"])
async def test_the_connection_form_verifies_certificates_by_default(
    hass: HomeAssistant, step: str
) -> None:
    flows = hass.config_entries.flow
    result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {"next_step_id": step})
    schema: vol.Schema = result["data_schema"]
    (key,) = (k for k in schema.schema if k == "verify_ssl")
    assert key.default() is True
    flows.async_abort(result["flow_id"])


class TlsFrontend:
    """HTTPS on 127.0.0.1 with a self-signed certificate, forwarding to a plain influxd.

    It runs in its own thread (a plain http.server), so failed handshakes stay out of Home
    Assistant's event loop.
    """

    def __init__(self, upstream: str, directory: Path) -> None:
        self.upstream = upstream
        self.requests = 0
        self._directory = directory
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def _context(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        cert_path = self._directory / "cert.pem"
        key_path = self._directory / "key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        return context

    def start(self) -> None:
        frontend = self

        class Forward(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                frontend.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                request = urllib.request.Request(
                    frontend.upstream + self.path,
                    data=self.rfile.read(length) if length else None,
                    method=self.command,
                )
                for header in ("Authorization", "Content-Type"):
                    if value := self.headers.get(header):
                        request.add_header(header, value)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, body, headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as err:
                    status, body, headers = err.code, err.read(), err.headers
                self.send_response(status)
                # As a reverse proxy does: the content type and InfluxDB's own headers (its
                # version tells the integration it reached InfluxDB).
                for name, value in headers.items():
                    if name.lower() == "content-type" or name.lower().startswith("x-influxdb-"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._server.daemon_threads = True
        self._server.socket = self._context().wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture
def tls_frontend(influxd: InfluxServer, tmp_path: Path) -> Iterator[TlsFrontend]:
    frontend = TlsFrontend(influxd.url, tmp_path)
    frontend.start()
    yield frontend
    frontend.stop()


@pytest.fixture
def sessions_asked_for(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The verify_ssl argument of every shared session the integration asks HA for."""
    asked: list[bool] = []
    real = connection.async_get_clientsession

    def spy(hass: HomeAssistant, verify_ssl: bool = True, *args: Any, **kwargs: Any) -> Any:
        asked.append(verify_ssl)
        return real(hass, verify_ssl, *args, **kwargs)

    monkeypatch.setattr(connection, "async_get_clientsession", spy)
    return asked


async def submit_tls(
    hass: HomeAssistant, frontend: TlsFrontend, database: str, **verify: bool
) -> Any:
    flows = hass.config_entries.flow
    result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v1"})
    return await flows.async_configure(
        result["flow_id"],
        {
            "url": frontend.url,
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "database": database,
            **verify,
        },
    )


async def test_a_self_signed_certificate_is_refused_by_default(
    hass: HomeAssistant,
    tls_frontend: TlsFrontend,
    database: str,
    sessions_asked_for: list[bool],
) -> None:
    result = await submit_tls(hass, tls_frontend, database)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"url": "tls_certificate"}
    assert sessions_asked_for
    assert all(sessions_asked_for)
    assert tls_frontend.requests == 0  # the handshake failed; nothing was sent
    hass.config_entries.flow.async_abort(result["flow_id"])


async def test_turning_verification_off_is_honoured_from_flow_to_writes(
    hass: HomeAssistant,
    influxd: InfluxServer,
    tls_frontend: TlsFrontend,
    database: str,
    sessions_asked_for: list[bool],
) -> None:
    result = await submit_tls(hass, tls_frontend, database, verify_ssl=False)
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    assert result["data"]["verify_ssl"] is False
    await hass.async_block_till_done()
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    for n in range(5):
        hass.states.async_set("sensor.tls", str(n), {"unit_of_measurement": "W"})
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert count(influxd, database, "W") == 5
    assert sessions_asked_for
    assert not any(sessions_asked_for)
    assert tls_frontend.requests > 0
