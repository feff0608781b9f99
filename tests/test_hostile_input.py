"""Hostile input: whatever a user, an automation or a device sends, the integration refuses it
cleanly or stores it exactly, and nothing typed anywhere can run another InfluxQL statement.

Hypothesis drives the Home Assistant side from a worker thread: each example submits its
service call or flow step to the test's event loop and waits for the answer, so a failing
example is shrunk as usual.
"""

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import datetime
import functools
import itertools
import math
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, Mock
import urllib.parse

import aiohttp
from homeassistant import config_entries
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol
from yarl import URL

from custom_components.ha_ingestor import recording as ingest, services
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.engine.generator import (
    MAX_ENTITIES,
    MAX_EVENTS,
    Pattern,
    generate,
)
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    encode_batch,
    sanitize_name,
    stored_by_influxdb_v1,
)
from custom_components.ha_ingestor.engine.migration.model import MigrationConfig, Phase
from custom_components.ha_ingestor.engine.writer import PointWriter
from custom_components.ha_ingestor.migration import EVENT_MIGRATION
from custom_components.ha_ingestor.options import EntryOptions
from custom_components.ha_ingestor.recording import Ingestion
from custom_components.ha_ingestor.rehearsal import GenerationResult
from custom_components.ha_ingestor.services import MAX_HISTORY_DAYS, MAX_LIVE_EVENTS

from .helpers import (
    admin_client,
    count,
    entry_for,
    eventually,
    ingest_options,
    setup_entry,
)
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port

# What a bad value may raise: a translated validation error or a schema error.
REFUSALS = (ServiceValidationError, vol.Invalid)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
_sentinels = itertools.count()

# Text a parser may choke on: separators, quotes, escapes, numbers in disguise, injections.
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\x00",
        "0",
        "-1",
        "1e309",
        "nan",
        "inf",
        "-inf",
        "0x10",
        "1_000",
        "None",
        "null",
        "true",
        "[]",
        "{}",
        "💥",
        "'",
        '"',
        "\\",
        "'; DROP DATABASE x; --",
        '"; DROP DATABASE "x"; --',
        "9" * 400,
        "a" * 10_000,
    ]
)
ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)

# The same without infinities: vol.Coerce(int) lets OverflowError escape on them (a known bug,
# pinned by test_an_infinite_count_is_refused_as_invalid_input), so the integer fields of
# generate_test_events are fuzzed with everything else.
FINITE_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_infinity=False),
    st.text(max_size=20),
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def field(*plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Anything at all, or something close to a valid value."""
    return st.one_of(ANY, *plausible)


def blocking[T](hass: HomeAssistant, work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the test's event loop from the Hypothesis thread."""
    return asyncio.run_coroutine_threadsafe(work, hass.loop).result(timeout=60)


async def fuzz(hass: HomeAssistant, test: Callable[[], None]) -> None:
    """Run a Hypothesis test in a worker thread while the event loop keeps serving it."""
    await hass.async_add_executor_job(test)


def database_names(influxd: InfluxServer) -> set[str]:
    return {row[0] for row in influxd.series("SHOW DATABASES", "")[0]["values"]}  # type: ignore[index]


@pytest.fixture
def sentinel(influxd: InfluxServer) -> Any:
    """A database nothing may touch, holding three points; dropped after the test."""
    name = f"sentinel_{next(_sentinels)}"
    influxd.create_database(name)
    influxd.write("canary value=1 1\ncanary value=2 2\ncanary value=3 3", name)
    yield name
    influxd.drop_database(name)


def assert_intact(influxd: InfluxServer, sentinel: str) -> None:
    assert sentinel in database_names(influxd)
    assert count(influxd, sentinel, "canary") == 3


@pytest.fixture
async def loaded(hass: HomeAssistant, influxd: InfluxServer, database: str) -> MockConfigEntry:
    return await setup_entry(hass, entry_for(influxd, database, ingest_options("legacy")))


@pytest.fixture
async def with_history(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> MockConfigEntry:
    """A loaded entry whose database holds a little legacy history, so discovery queries run."""
    influxd.write(
        "W,domain=sensor,entity_id=a value=1 1700000000000000000\n"
        "W,domain=sensor,entity_id=a value=2 1700000001000000000\n"
        'kWh,domain=sensor,entity_id=b state="on",value=1 1700000002000000000',
        database,
    )
    return await setup_entry(hass, entry_for(influxd, database, ingest_options("legacy")))


# Service calls.

GENERATE_CALLS = st.fixed_dictionaries(
    {
        "count": st.one_of(
            FINITE_ANY,
            st.integers(-5, MAX_EVENTS + 5),
            st.sampled_from([MAX_LIVE_EVENTS, MAX_LIVE_EVENTS + 1, MAX_EVENTS, MAX_EVENTS + 1]),
        )
    },
    optional={
        "mode": field(st.sampled_from(["live", "history"])),
        "pattern": field(st.sampled_from([p.value for p in Pattern])),
        "entity_count": st.one_of(FINITE_ANY, st.integers(-2, MAX_ENTITIES + 2)),
        "days": field(st.floats(-1, MAX_HISTORY_DAYS + 10)),
        "seed": FINITE_ANY,
        "high_cardinality": ANY,
        "database": ANY,
        "config_entry_id": ANY,
    },
)


async def test_fuzzed_generate_calls_are_refused_cleanly_or_stay_within_the_limits(
    hass: HomeAssistant, loaded: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted: list[tuple[str, Any]] = []
    result = GenerationResult(events=0, points=0, entities=0, per_domain={}, seconds=0.1)

    async def fire_live(_hass: HomeAssistant, config: Any) -> GenerationResult:
        accepted.append(("live", config))
        return result

    async def write_history(_client: Any, _layout: Any, config: Any, _db: str) -> GenerationResult:
        accepted.append(("history", config))
        return result

    # Accepted requests are recorded, not run: the point is what gets through.
    monkeypatch.setattr(services, "async_fire_live", fire_live)
    monkeypatch.setattr(services, "async_write_history", write_history)
    client = loaded.runtime_data.client
    monkeypatch.setattr(client, "database_exists", AsyncMock(return_value=True))
    monkeypatch.setattr(client, "create_database", AsyncMock())

    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(data=GENERATE_CALLS)
    def check(data: dict[str, Any]) -> None:
        accepted.clear()
        call = hass.services.async_call(
            DOMAIN, "generate_test_events", data, blocking=True, return_response=True
        )
        try:
            blocking(hass, call)
        except REFUSALS:
            assert not accepted
            outcomes["refused"] += 1
            return
        outcomes["accepted"] += 1
        ((mode, config),) = accepted
        limit = MAX_LIVE_EVENTS if mode == "live" else MAX_EVENTS
        assert 0 < config.count <= limit
        assert config.entity_count is None or 0 < config.entity_count <= MAX_ENTITIES
        assert config.start < config.end
        assert len(list(itertools.islice(generate(config), 3))) == min(3, config.count)

    await fuzz(hass, check)
    # Both sides of the line were explored.
    assert outcomes["refused"], outcomes
    assert outcomes["accepted"], outcomes


@pytest.mark.parametrize("field_name", ["count", "entity_count", "seed"])
async def test_an_infinite_count_is_refused_as_invalid_input(
    hass: HomeAssistant, loaded: MockConfigEntry, field_name: str
) -> None:
    data = {"count": 10, field_name: float("inf")}
    with pytest.raises(REFUSALS):
        await hass.services.async_call(
            DOMAIN, "generate_test_events", data, blocking=True, return_response=True
        )


# Times InfluxDB can represent (int64 nanoseconds); those outside are accepted and then fail
# in the engine (a known bug, pinned by test_times_influxdb_cannot_represent_are_refused).
# Naive bounds: the service gives a naive time Home Assistant's zone.
INFLUX_TIMES = st.datetimes(
    min_value=datetime(1678, 1, 1),  # noqa: DTZ001
    max_value=datetime(2262, 1, 1),  # noqa: DTZ001
).map(datetime.isoformat)

START_CALLS = st.fixed_dictionaries(
    {"dry_run": field(st.just(True))},
    optional={
        "strategy": field(st.sampled_from(["immediate", "gradual", "dual_write", "blue_green"])),
        "start_time": field(INFLUX_TIMES),
        "end_time": field(INFLUX_TIMES),
        "entities": field(
            st.lists(st.sampled_from(["sensor.a", "sensor.*", "light.k?tchen"]), max_size=2)
        ),
        "batch_size": field(st.integers(-1, 60_000)),
        "concurrent_batches": field(st.integers(-1, 40)),
        "max_error_rate": field(st.floats(-0.5, 1.5)),
        "rollback_threshold": field(st.floats(-0.5, 1.5)),
        "validate_percentage": field(st.floats(-0.5, 1.5)),
        "migration_window_hours": field(st.integers(-1, 10_000)),
        "cleanup_delay_hours": field(st.integers(-1, 10_000)),
        "delete_legacy_data": ANY,
        "config_entry_id": ANY,
    },
)


async def test_fuzzed_start_migration_calls_never_leave_a_half_started_migration(
    hass: HomeAssistant, with_history: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = with_history
    controller = loaded.runtime_data.migration
    storage = loaded.runtime_data.storage_dir
    real_start = controller.async_start
    started: list[MigrationConfig] = []

    async def start(config: MigrationConfig) -> Any:
        # Dry runs go to the real engine; a real start is recorded instead of run.
        if config.dry_run:
            return await real_start(config)
        started.append(config)
        return {}

    monkeypatch.setattr(controller, "async_start", start)

    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(data=START_CALLS)
    def check(data: dict[str, Any]) -> None:
        started.clear()
        call = hass.services.async_call(
            DOMAIN, "start_migration", data, blocking=True, return_response=True
        )
        try:
            response = blocking(hass, call)
        except REFUSALS:
            assert not started
            outcomes["refused"] += 1
        else:
            outcomes["dry run" if not started else "started"] += 1
            assert started or (response and response["dry_run"] is True)
            for config in started:  # a config that got through is a valid one
                assert config.max_error_rate <= config.rollback_threshold
                assert config.start is None or config.end is None or config.start < config.end
        assert controller.phase is Phase.IDLE
        assert controller.state is None
        assert not (storage / "audit.jsonl").exists()

    await fuzz(hass, check)
    assert outcomes["refused"], outcomes
    assert outcomes["dry run"], outcomes
    assert outcomes["started"], outcomes


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(
    "times",
    [
        {"end_time": "9999-12-31T23:59:59+00:00"},
        {"start_time": "0001-01-01T00:00:00+00:00"},
        {"start_time": "2300-01-01T00:00:00+00:00", "end_time": "2400-01-01T00:00:00+00:00"},
    ],
)
async def test_times_influxdb_cannot_represent_are_refused(
    hass: HomeAssistant, with_history: MockConfigEntry, times: dict[str, str], dry_run: bool
) -> None:
    controller = with_history.runtime_data.migration
    try:
        with pytest.raises(REFUSALS):
            await hass.services.async_call(
                DOMAIN,
                "start_migration",
                {"dry_run": dry_run, **times},
                blocking=True,
                return_response=True,
            )
        assert controller.state is None
    finally:
        await controller.async_shutdown()


async def test_refused_start_migration_leaves_no_trace(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    controller = loaded.runtime_data.migration
    events: list[Event] = []

    @callback
    def _record(event: Event) -> None:
        events.append(event)

    hass.bus.async_listen(EVENT_MIGRATION, _record)
    for bad in (
        {"batch_size": 0},
        {"concurrent_batches": 10_000},
        {"max_error_rate": 0.5, "rollback_threshold": 0.1},
        {"validate_percentage": 0},
        {"strategy": "yolo"},
        {"entities": ["not an entity"]},
        {"start_time": "2024-01-02T00:00:00+00:00", "end_time": "2024-01-01T00:00:00+00:00"},
        {"config_entry_id": "nope"},
    ):
        with pytest.raises(REFUSALS):
            await hass.services.async_call(
                DOMAIN, "start_migration", bad, blocking=True, return_response=True
            )
        assert controller.phase is Phase.IDLE
        assert controller.state is None
    await hass.async_block_till_done()
    assert events == []
    assert not (loaded.runtime_data.storage_dir / "audit.jsonl").exists()


# Config and options flows.


def _fuzzable_url(url: Any) -> bool:
    """Leave out URLs that would reach a host other than 127.0.0.1, and those yarl can't
    parse (they crash the flow: a known bug, pinned by test_unparsable_urls_are_form_errors).
    """
    if not isinstance(url, str):
        return True
    try:
        parsed = URL(url.strip())
    except ValueError:
        return False
    if parsed.user is not None or parsed.password is not None:
        return False  # pinned by test_urls_with_credentials_are_form_errors
    return parsed.scheme not in ("http", "https") or parsed.host in (None, "", "127.0.0.1")


def flow_urls(server_url: str) -> st.SearchStrategy[Any]:
    closed = f"http://127.0.0.1:{free_port()}"
    return mostly(
        st.sampled_from(
            [
                server_url,
                server_url + "/",
                f" {server_url} ",
                closed,
                "http://[::1",
                "http://[",
                "http://",
                "https://",
                "ftp://127.0.0.1",
                "http://127.0.0.1:99999",
                "http://127.0.0.1:0",
                "http:127.0.0.1",
                "//127.0.0.1",
                "http://127.0.0.1/%zz",
                "http://127.0.0.1\n:8086",
            ]
        ),
        st.builds(
            lambda port, path: f"http://127.0.0.1:{port}/{urllib.parse.quote(path)}",
            st.integers(-5, 70_000),
            st.text(max_size=8),
        ),
    ).filter(_fuzzable_url)


async def test_fuzzed_connection_forms_answer_with_form_errors_only(
    hass: HomeAssistant, influxd: InfluxServer
) -> None:
    text = st.one_of(st.text(max_size=12), ODD_TEXT)
    # Beyond Latin-1, credentials crash the client (pinned by
    # test_a_password_beyond_latin_1_is_accepted).
    latin_1 = text.filter(lambda t: all(ord(c) < 256 for c in t))
    v1_fields = st.fixed_dictionaries(
        {
            "url": flow_urls(influxd.url),
            "database": mostly(text, st.sampled_from(["home", "a b"])),
        },
        optional={
            "username": mostly(latin_1, st.just(ADMIN_USER)),
            "password": mostly(latin_1, st.just(ADMIN_PASSWORD)),
            "verify_ssl": mostly(st.booleans()),
        },
    )
    v2_fields = st.fixed_dictionaries(
        {
            "url": flow_urls(influxd.url),
            "token": mostly(text),
            "organization": mostly(text),
            "bucket": mostly(text),
        },
        optional={"verify_ssl": mostly(st.booleans())},
    )
    steps = st.one_of(
        st.tuples(st.just("influxdb_v1"), v1_fields), st.tuples(st.just("influxdb_v2"), v2_fields)
    )
    flows = hass.config_entries.flow

    async def submit(step: str, user_input: dict[str, Any]) -> Any:
        result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
        result = await flows.async_configure(result["flow_id"], {"next_step_id": step})
        flow_id = result["flow_id"]
        try:
            return await flows.async_configure(flow_id, user_input)
        finally:
            if flow_id in {f["flow_id"] for f in flows.async_progress()}:
                flows.async_abort(flow_id)

    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(step=steps)
    def check(step: tuple[str, dict[str, Any]]) -> None:
        try:
            result = blocking(hass, submit(*step))
        except vol.Invalid:
            outcomes["invalid"] += 1
            return
        outcomes[next(iter((result.get("errors") or {"": "none"}).values()))] += 1
        assert result["type"] is FlowResultType.FORM, result
        assert result["errors"], result
        assert "unknown" not in result["errors"].values(), result

    await fuzz(hass, check)
    assert outcomes["invalid"], outcomes
    assert outcomes["cannot_connect"], outcomes
    assert outcomes["invalid_url"], outcomes
    # Some reached the server and got its answer about credentials, database or API version.
    answered = ("invalid_auth", "database_not_found", "username_required", "wrong_api_version_v1")
    assert any(outcomes[reason] for reason in answered), outcomes
    assert hass.config_entries.async_entries(DOMAIN) == []


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://[", "http://127.0.0.1:99999", "http://127.0.0.1:-5/"]
)
async def test_unparsable_urls_are_form_errors(hass: HomeAssistant, url: str) -> None:
    flows = hass.config_entries.flow
    result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v1"})
    try:
        result = await flows.async_configure(
            result["flow_id"], {"url": url, "database": "home", "verify_ssl": True}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"url": "invalid_url"}
    finally:
        flows.async_abort(result["flow_id"])


async def test_a_password_beyond_latin_1_is_accepted(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    user, password = "jürgen_ā", "密码-Ā-🔑"
    influxd.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
    try:
        flows = hass.config_entries.flow
        result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
        result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v1"})
        result = await flows.async_configure(
            result["flow_id"],
            {
                "url": influxd.url,
                "username": user,
                "password": password,
                "database": database,
                "verify_ssl": True,
            },
        )
        if result["type"] is FlowResultType.FORM:
            flows.async_abort(result["flow_id"])
        assert result["type"] is FlowResultType.CREATE_ENTRY, result.get("errors")
        await hass.async_block_till_done()
        (entry,) = hass.config_entries.async_entries(DOMAIN)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        influxd.query(f'DROP USER "{user}"')


@pytest.mark.parametrize("step", ["influxdb_v1", "influxdb_v2"])
async def test_urls_with_credentials_are_form_errors(
    hass: HomeAssistant, influxd: InfluxServer, step: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = URL(influxd.url).with_user("someone").with_password("pw-in-url")
    user_input: dict[str, Any] = (
        {"url": str(url), "username": ADMIN_USER, "password": ADMIN_PASSWORD, "database": "x"}
        if step == "influxdb_v1"
        else {"url": str(url), "token": "t", "organization": "o", "bucket": "b"}
    )
    flows = hass.config_entries.flow
    result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {"next_step_id": step})
    result = await flows.async_configure(result["flow_id"], user_input)
    flows.async_abort(result["flow_id"])
    assert result["errors"] == {"url": "invalid_url"}
    assert "Traceback" not in caplog.text


def mostly(*plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, one time in five anything at all (NaN aside: see below)."""
    return st.integers(0, 4).flatmap(lambda roll: NOT_NAN if roll == 0 else st.one_of(*plausible))


# NaN passes HA's NumberSelector and the options flow stores it (a known bug, pinned by
# test_nan_thresholds_are_refused_by_the_options_flow), so the options fuzz leaves it out.
NOT_NAN = ANY.filter(lambda v: v != "nan" and not (isinstance(v, float) and math.isnan(v)))


def options_input() -> st.SearchStrategy[dict[str, Any]]:
    text = st.one_of(st.text(max_size=12), ODD_TEXT.filter(lambda v: v != "nan"))
    text_list = mostly(st.lists(text, max_size=3))
    number = mostly(
        st.floats(-2, 60_000, allow_nan=False), st.integers(-2, 60_000), st.floats(0, 1)
    )
    return st.fixed_dictionaries(
        {
            "legacy_layout": st.fixed_dictionaries(
                {},
                optional={
                    "measurement_attr": mostly(st.sampled_from(["unit_of_measurement", "x y"])),
                    "default_measurement": mostly(text),
                    "override_measurement": mostly(text),
                    "tags": text_list,
                    "tags_attributes": text_list,
                    "ignore_attributes": text_list,
                },
            ),
            "ingestion": st.fixed_dictionaries(
                {},
                optional={
                    "write_mode": mostly(st.sampled_from(["legacy", "both", "optimized"])),
                    "attribute_allowlist": text_list,
                    "include_entities": mostly(st.lists(st.just("sensor.a"), max_size=1)),
                    "exclude_entities": text_list,
                    "include_domains": text_list,
                    "exclude_domains": text_list,
                    "include_entity_globs": text_list,
                    "exclude_entity_globs": text_list,
                },
            ),
            "migration": st.fixed_dictionaries(
                {},
                optional={
                    "target_database": mostly(text),
                    "batch_size": number,
                    "concurrent_batches": number,
                    "max_error_rate": number,
                    "rollback_threshold": number,
                    "validate_percentage": number,
                    "migration_window_hours": number,
                    "cleanup_delay_hours": number,
                    "delete_legacy_data": mostly(st.booleans()),
                },
            ),
        }
    )


@pytest.mark.parametrize("key", ["max_error_rate", "rollback_threshold", "validate_percentage"])
@pytest.mark.parametrize("nan", [float("nan"), "nan"])
async def test_nan_thresholds_are_refused_by_the_options_flow(
    hass: HomeAssistant, influxd: InfluxServer, database: str, key: str, nan: Any
) -> None:
    entry = entry_for(influxd, database)
    entry.add_to_hass(hass)
    options = hass.config_entries.options
    result = await options.async_init(entry.entry_id)
    try:
        result = await options.async_configure(
            result["flow_id"], {"legacy_layout": {}, "ingestion": {}, "migration": {key: nan}}
        )
    except vol.Invalid:
        return
    assert result["type"] is FlowResultType.FORM, entry.options
    assert result["errors"]
    options.async_abort(result["flow_id"])


async def test_fuzzed_options_are_refused_or_give_a_working_configuration(
    hass: HomeAssistant, influxd: InfluxServer, database: str, tmp_path: Path
) -> None:
    entry = entry_for(influxd, database)
    entry.add_to_hass(hass)
    options = hass.config_entries.options

    async def submit(user_input: dict[str, Any]) -> Any:
        result = await options.async_init(entry.entry_id)
        flow_id = result["flow_id"]
        try:
            return await options.async_configure(flow_id, user_input)
        finally:
            if flow_id in {f["flow_id"] for f in options.async_progress()}:
                options.async_abort(flow_id)

    async def works(stored: dict[str, Any]) -> None:
        """What setup builds from the options must build."""
        client = Mock(database=database)
        options = EntryOptions.parse(stored)
        Ingestion(hass, client, options, tmp_path, lambda: None)
        assert options.migration.max_error_rate <= options.migration.rollback_threshold

    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(user_input=options_input())
    def check(user_input: dict[str, Any]) -> None:
        try:
            result = blocking(hass, submit(user_input))
        except vol.Invalid:
            outcomes["invalid"] += 1
            return
        if result["type"] is FlowResultType.FORM:
            assert result["errors"], result
            outcomes["form error"] += 1
            return
        outcomes["stored"] += 1
        assert result["type"] is FlowResultType.CREATE_ENTRY, result
        blocking(hass, works(dict(entry.options)))

    await fuzz(hass, check)
    assert outcomes["invalid"], outcomes
    assert outcomes["form error"], outcomes
    assert outcomes["stored"], outcomes


# Names and values with every line-protocol special character.

# A backslash before a double quote is left out: InfluxDB 1.x unescapes it in measurements and
# field keys, which sanitize_name misses (a known bug, pinned by
# test_a_backslash_before_a_quote_in_a_name_lands_as_sanitized).
_SPECIALS = st.text(
    st.sampled_from(list(" ,=\"'\\\n\t\r#=é🔥ß中\u200b\u202e\x7fA_1.")), min_size=1, max_size=12
).filter(lambda text: '\\"' not in text)


def stored_shape(point: Point) -> tuple[Any, ...]:
    """A point as InfluxDB gives it back: names sanitized, empty and unwritable values gone."""
    measurement = sanitize_name(point.measurement)
    if measurement.startswith("#"):
        measurement = "_" + measurement
    tags = {sanitize_name(k): sanitize_name(v) for k, v in point.tags.items() if k and v}
    fields = {
        sanitize_name(k): as_stored(v)
        for k, v in point.fields.items()
        if k and not (isinstance(v, float) and not math.isfinite(v))
    }
    return measurement, tags, fields, point.time_ns


def legacy_stored_shape(point: Point) -> tuple[Any, ...]:
    """A legacy point as InfluxDB gives it back, from what ``stored_by_influxdb_v1`` says."""
    fields = {k: as_stored(v) for k, v in point.fields.items()}
    return point.measurement, dict(point.tags), fields, point.time_ns


def as_stored(value: Any) -> Any:
    """Numbers compared as floats: InfluxDB's JSON writes 3e16 as 30000000000000000."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


async def test_hostile_names_and_values_land_exactly(
    hass: HomeAssistant, influxd: InfluxServer, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Points leave within tens of milliseconds, so each example can check its own.
    monkeypatch.setattr(ingest, "PointWriter", functools.partial(PointWriter, flush_interval=0.02))
    options = ingest_options("both") | {"legacy_layout": {"tags_attributes": ["room"]}}
    entry = await setup_entry(hass, entry_for(influxd, database, options))
    ingestion = entry.runtime_data.ingestion
    numbers = itertools.count()

    def read_back(object_id: str) -> list[tuple[Any, ...]]:
        query = (
            f"SELECT * FROM /.*/ WHERE \"entity_id\" = '{object_id}' "
            f"OR \"entity_id\" = 'sensor.{object_id}' GROUP BY *"
        )
        found = []
        for series in influxd.series(query, database):
            tags = {k: v for k, v in (series.get("tags") or {}).items() if v}  # type: ignore[union-attr]
            columns = series["columns"]  # type: ignore[index]
            for row in series["values"]:  # type: ignore[index]
                fields = {
                    c: as_stored(v)
                    for c, v in zip(columns[1:], row[1:], strict=True)
                    if v is not None
                }
                found.append((series["name"], tags, fields, row[0]))
        return found

    async def record(object_id: str, state: str, attributes: dict[str, Any]) -> list[Any]:
        """Set the state; return the shapes its points must have once they are stored."""
        entity = f"sensor.{object_id}"
        hass.states.async_set(entity, state, attributes)
        stored = hass.states.get(entity)
        assert stored is not None
        legacy = ingestion.legacy_layout.point(stored, stored.last_updated)
        optimized = ingestion.optimized_layout.point(stored, stored.last_updated)
        # The legacy layout is written as core's client writes it (see stored_by_influxdb_v1).
        legacy = None if legacy is None else stored_by_influxdb_v1(legacy)
        want = sorted(
            [
                *([legacy_stored_shape(legacy)] if legacy else []),
                *([stored_shape(optimized)] if optimized else []),
            ],
            key=repr,
        )
        await eventually(
            hass, lambda: len(read_back(object_id)) >= len(want), timeout=5, interval=0.02
        )
        return want

    @settings(
        max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        state=st.one_of(_SPECIALS, st.floats(allow_nan=False).map(str)),
        unit=_SPECIALS,
        friendly_name=_SPECIALS,
        room=_SPECIALS,
        name=_SPECIALS,
        value=st.one_of(_SPECIALS, st.integers(-(2**53), 2**53), st.floats(allow_nan=False)),
    )
    def check(state: str, unit: str, friendly_name: str, room: str, name: str, value: Any) -> None:
        object_id = f"fuzz_{next(numbers)}"
        attributes = {
            "unit_of_measurement": unit,
            "friendly_name": friendly_name,
            "room": room,
            name: value,
        }
        want = blocking(hass, record(object_id, state, attributes))
        assert sorted(read_back(object_id), key=repr) == want

    await fuzz(hass, check)
    assert ingestion.stats.dead_letter_count == 0
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_backslash_before_a_quote_in_a_name_lands_as_sanitized(
    hass: HomeAssistant, influxd: InfluxServer, database: str
) -> None:
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("legacy")))
    hass.states.async_set("sensor.quoted", "1", {"unit_of_measurement": 'W\\"', 'a\\"b': "x"})
    state = hass.states.get("sensor.quoted")
    assert state is not None
    point = entry.runtime_data.ingestion.legacy_layout.point(state, state.last_updated)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert point is not None
    expected = stored_by_influxdb_v1(point)
    assert expected is not None
    measurement, tags, fields, _time = legacy_stored_shape(expected)
    assert measurement == 'W/"'
    assert 'a/"b_str' in fields
    stored = influxd.series("SELECT * FROM /.*/ GROUP BY *", database)
    assert [series["name"] for series in stored] == [measurement]
    assert set(stored[0]["columns"]) == {"time", *fields}  # type: ignore[arg-type]
    assert stored[0]["tags"] == dict(tags)


# InfluxQL injection.


async def test_an_entity_filter_holding_influxql_is_refused_and_runs_nothing(
    hass: HomeAssistant, influxd: InfluxServer, loaded: MockConfigEntry, sentinel: str
) -> None:
    for attack in (
        f"x'; DROP DATABASE {sentinel}; --",
        f'sensor.x"; DROP DATABASE "{sentinel}"; --',
        "sensor.a' OR '1'='1",
        f"sensor.a\nDROP DATABASE {sentinel}",
    ):
        with pytest.raises(ServiceValidationError):
            await hass.services.async_call(
                DOMAIN,
                "start_migration",
                {"dry_run": True, "entities": [attack]},
                blocking=True,
                return_response=True,
            )
    assert_intact(influxd, sentinel)
    assert loaded.runtime_data.migration.phase is Phase.IDLE


async def test_a_database_name_holding_influxql_is_only_ever_a_name(
    hass: HomeAssistant, influxd: InfluxServer, loaded: MockConfigEntry, sentinel: str
) -> None:
    attack = f'x"; DROP DATABASE "{sentinel}"; --'
    before = database_names(influxd)
    response = await hass.services.async_call(
        DOMAIN,
        "generate_test_events",
        {"count": 30, "days": 1, "database": attack},
        blocking=True,
        return_response=True,
    )
    assert response["database"] == attack
    try:
        assert_intact(influxd, sentinel)
        assert database_names(influxd) == before | {attack}
        points = influxd.query("SELECT COUNT(*) FROM /.*/", attack)[0]["series"]
        assert sum(max(v for v in s["values"][0][1:] if v) for s in points) == 30  # type: ignore[index]
    finally:
        influxd.query("DROP DATABASE " + '"' + attack.replace('"', '\\"') + '"')


async def test_a_config_flow_database_holding_influxql_is_just_not_found(
    hass: HomeAssistant, influxd: InfluxServer, sentinel: str
) -> None:
    flows = hass.config_entries.flow
    for attack in (
        f'home"; DROP DATABASE "{sentinel}"; --',
        f"home'; DROP DATABASE {sentinel}; --",
        f"home\nDROP DATABASE {sentinel}",
    ):
        result = await flows.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
        result = await flows.async_configure(result["flow_id"], {"next_step_id": "influxdb_v1"})
        result = await flows.async_configure(
            result["flow_id"],
            {
                "url": influxd.url,
                "username": ADMIN_USER,
                "password": ADMIN_PASSWORD,
                "database": attack,
                "verify_ssl": True,
            },
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"database": "database_not_found"}
        flows.async_abort(result["flow_id"])
    assert_intact(influxd, sentinel)


async def test_hostile_measurement_and_tag_names_in_the_history_are_read_as_data(
    hass: HomeAssistant, influxd: InfluxServer, database: str, sentinel: str
) -> None:
    # Legacy history whose names are injection attempts, written straight to the server.
    measurement = f'm"; DROP DATABASE "{sentinel}"; --'
    object_id = f"a'; DROP DATABASE {sentinel}; --"
    async with aiohttp.ClientSession() as session:
        client = admin_client(session, influxd, database)
        lines = [
            Point(measurement, {"domain": "sensor", "entity_id": object_id}, {"value": n}, n)
            for n in (1_000_000_000, 2_000_000_000, 3_000_000_000)
        ]
        await client.write(encode_batch(lines))
    entry = await setup_entry(hass, entry_for(influxd, database, ingest_options("legacy")))

    plan = await hass.services.async_call(
        DOMAIN, "start_migration", {"dry_run": True}, blocking=True, return_response=True
    )
    assert plan["measurements"] == [measurement]
    assert plan["entity_ids"] == [f"sensor.{object_id}"]
    assert plan["estimated_points"] == 3
    assert_intact(influxd, sentinel)
    assert entry.runtime_data.migration.phase is Phase.IDLE
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_entry_on_a_database_named_like_an_injection_records_into_it(
    hass: HomeAssistant, influxd: InfluxServer, sentinel: str
) -> None:
    attack = f"q\"uo'te; DROP DATABASE {sentinel}"
    influxd.query('CREATE DATABASE "' + attack.replace('"', '\\"') + '"')
    try:
        entry = await setup_entry(hass, entry_for(influxd, attack, ingest_options("legacy")))
        for n in range(5):
            hass.states.async_set("sensor.quoted", str(n), {"unit_of_measurement": "W"})
        plan = await hass.services.async_call(
            DOMAIN, "start_migration", {"dry_run": True}, blocking=True, return_response=True
        )
        assert plan["dry_run"] is True
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert count(influxd, attack, "W") == 5
        assert_intact(influxd, sentinel)
    finally:
        influxd.query('DROP DATABASE "' + attack.replace('"', '\\"') + '"')
