"""The legacy writer stores what HA core stores, checked on the bytes and on the real server.

Core writes through its client libraries (``influxdb`` for 1.x, ``influxdb-client`` for 2.x),
whose escaping InfluxDB 1.x only partly undoes: a name keeps its doubled backslashes, a line
break is kept as backslash + ``n``. Here core's own converter and client write into one
database and ours into another, and the server's answers are compared; and the model of what
the server keeps (``stored_by_influxdb_v1``) is checked against what it really keeps.
"""

from collections.abc import AsyncIterator, Collection, Iterator
from datetime import UTC, datetime, timedelta
import itertools
import math
from typing import Any

import aiohttp
from homeassistant.core import State
from hypothesis import HealthCheck, given, settings, strategies as st
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
from influxdb.line_protocol import make_line
from influxdb_client import Point as V2Point
import pytest

from custom_components.ha_ingestor.engine.influx import InfluxClient
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    as_stored_text,
    encode,
    encode_like_core_v1,
    encode_like_core_v2,
    name_from_stored,
    stored_by_influxdb_v1,
    stored_name,
)
from custom_components.ha_ingestor.layouts.legacy import LegacyLayout, LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import (
    LegacyTransform,
    OptimizedLayout,
    OptimizedOptions,
)

from .helpers import admin_client
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer
from .test_legacy_layout import core_converter, state_changed

START = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)

# What core's client sends that the server refuses or garbles (the README's lossy corners):
# a name ending in a backslash, a backslash before a separator or quote in a measurement or
# before a quote in a field key, a measurement starting with "#" (or tabs and then "#"), a
# measurement or first field key of nothing but tabs (the server skips them), and "time".
_SPECIALS = " ,=\"'\\\n\t#é🔥ß中\u200bA_1."


def core_loses(text: str) -> bool:
    return (
        text.endswith("\\")
        or any(f"\\{c}" in text for c in ' ,="')
        or text.lstrip("\t").startswith("#")
        or not text.lstrip("\t")
        or text.strip() == "time"
        or "\r" in text
    )


special_texts = st.text(st.sampled_from(list(_SPECIALS)), min_size=1, max_size=10).filter(
    lambda text: not core_loses(text)
)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """These tests need the real server, not Home Assistant."""


# --- The bytes ---


def _core_v1_line(point: Point) -> str:
    return make_line(point.measurement, point.tags, point.fields, point.time_ns)


@settings(max_examples=500, deadline=None)
@given(
    measurement=special_texts,
    tags=st.dictionaries(special_texts, special_texts, max_size=3),
    fields=st.dictionaries(
        special_texts,
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(st.sampled_from(list(_SPECIALS + "\r")), max_size=10),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_the_legacy_line_is_core_v1_clients_line_byte_for_byte(
    measurement: str, tags: dict[str, str], fields: dict[str, Any]
) -> None:
    point = Point(measurement, tags, fields, 1_743_508_800_123_456_000)
    assert encode_like_core_v1(point) == _core_v1_line(point)


# Names core's 2.x client sends that the server would misread (a backslash before a separator
# or ending the name, a leading "#"): ours repairs them, like on 1.x.
v2_names = st.text(st.sampled_from(list(_SPECIALS + "\r")), min_size=1, max_size=8).filter(
    lambda text: (
        not (text.endswith("\\") or any(f"\\{c}" in text for c in ' ,="') or text.startswith("#"))
    )
)


@settings(max_examples=500, deadline=None)
@given(
    measurement=v2_names,
    tags=st.dictionaries(v2_names, v2_names, max_size=3),
    fields=st.dictionaries(
        v2_names,
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(st.sampled_from(list(_SPECIALS + "\r")), max_size=10),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_the_legacy_line_on_2x_is_core_v2_clients_line_byte_for_byte(
    measurement: str, tags: dict[str, str], fields: dict[str, Any]
) -> None:
    point = Point(measurement, tags, fields, 1_743_508_800_123_456_000)
    core = V2Point.from_dict(
        {"measurement": measurement, "tags": tags, "fields": fields, "time": point.time_ns}
    ).to_line_protocol()
    assert encode_like_core_v2(point) == (core or None)


def test_lines_core_loses_are_repaired_not_lost() -> None:
    point = Point("#W\\", {"path": "C:\\"}, {"x\\": 1.0, 'q\\"': 2.0, "v": math.nan}, 1)
    assert encode_like_core_v1(point) == '_#W/,path=C:/ q/"=2.0,x/=1.0 1'
    assert encode_like_core_v2(point) == '_#W/,path=C:/ q/"=2,x/=1 1'


def test_a_stored_name_reads_back_as_the_text_core_wrote() -> None:
    for text in ["x\\y", "a\nb", "a\\nb", "\\\\\n", "plain", "C:\\Users\\fid"]:
        assert name_from_stored(stored_name(text)) == text


def test_a_line_break_and_a_typed_backslash_n_are_one_stored_text() -> None:
    assert as_stored_text("first\nsecond") == as_stored_text("first\\nsecond") == "first\\nsecond"


# --- On the real server ---


def _core_client(influxd: InfluxServer, database: str) -> InfluxDBClient:
    return InfluxDBClient(
        host="127.0.0.1",
        port=influxd.http_port,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
        database=database,
    )


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def stored(influxd: InfluxServer, database: str, where: str = "") -> list[Point]:
    """Every point of a database as the server answers (numbers as floats)."""
    points = []
    for series in influxd.series(f"SELECT * FROM /.*/ {where} GROUP BY *", database):
        tags = {k: v for k, v in (series.get("tags") or {}).items() if v}  # type: ignore[union-attr]
        columns = series["columns"]  # type: ignore[index]
        for row in series["values"]:  # type: ignore[index]
            fields = {
                column: _number(value)
                for column, value in zip(columns[1:], row[1:], strict=True)
                if value is not None
            }
            points.append(Point(str(series["name"]), tags, fields, row[0]))
    return sorted(points, key=repr)


def _comparable(points: list[Point | None]) -> list[Point]:
    return sorted(
        (
            Point(
                p.measurement, dict(p.tags), {k: _number(v) for k, v in p.fields.items()}, p.time_ns
            )
            for p in points
            if p is not None
        ),
        key=repr,
    )


def write_both(
    influxd: InfluxServer,
    core_db: str,
    ours_db: str,
    options: dict[str, Any],
    states: list[State],
) -> list[Point | None]:
    """Core's converter and 1.x client into ``core_db``, our legacy layout and encoder into
    ``ours_db``; our points."""
    convert = core_converter(options)
    layout = LegacyLayout(LegacyOptions.from_options(options))
    times = [START + timedelta(seconds=index) for index in range(len(states))]
    core_json = [
        json
        for state, time in zip(states, times, strict=True)
        if (json := convert(state_changed(state, time))) is not None
    ]
    client = _core_client(influxd, core_db)
    try:
        client.write_points(core_json)
    except InfluxDBClientError as err:
        # A line the server refuses fails core's whole request; the others are stored.
        if err.code != 400:
            raise
    finally:
        client.close()
    ours = [layout.point(state, time) for state, time in zip(states, times, strict=True)]
    lines = [line for point in ours if point and (line := encode_like_core_v1(point))]
    if lines:
        influxd.write("\n".join(lines), ours_db)
    return ours


TRICKY_STATES = [
    # A line break in a text state and in a friendly name; a typed backslash + n.
    State("sensor.note", "first\nsecond", {"friendly_name": "Line one\nLine two"}),
    State("sensor.typed", "first\\nsecond", {"friendly_name": "Line one\\nLine two"}),
    # Backslashes: in the unit naming the measurement, in a tags_attributes value, in text.
    State(
        "sensor.path",
        "C:\\Users\\fid",
        {"unit_of_measurement": "x\\y", "folder": "C:\\Users\\fid", "friendly_name": "a\\b"},
    ),
    State("sensor.level", "12.5", {"unit_of_measurement": "m\nx", "friendly_name": "Unit\nbreak"}),
    # Tabs, quotes, commas, "=", spaces, unicode.
    State("sensor.tabbed", "a\tb", {"unit_of_measurement": "m\tx", "friendly_name": "Tab\tName"}),
    State("sensor.quoted", 'say "hi"', {"friendly_name": 'The "best"', "note": 'a,b c=d "e"'}),
    State("sensor.commas", "3", {"unit_of_measurement": "a,b=c d", "friendly_name": "x=y, z"}),
    State("sensor.unicode", "☀️ sunny", {"unit_of_measurement": "°C", "friendly_name": "Küche 🌡"}),
    # Attribute names (field keys) with every special character.
    State(
        "sensor.keys",
        "on",
        {"a\\b": 1, "line\nkey": "x", "tab\tkey": 2, "sp ace": "y", "com,ma": 3, "eq=ual": "z"},
    ),
    # Per-entity, per-domain and per-glob overrides.
    State("sensor.living", "21.5", {"unit_of_measurement": "°C", "friendly_name": "Living"}),
    State("light.hall", "on", {"brightness": 128, "friendly_name": "Hall", "effect": "x"}),
    State("switch.plug_power", "off", {"current": 0.5, "voltage": 230}),
]
TRICKY_OPTIONS: dict[str, Any] = {
    "tags_attributes": ["folder"],
    "tags": {"instance": "home\\one"},
    "component_config": {"sensor.living": {"override_measurement": "living_custom"}},
    "component_config_domain": {"light": {"ignore_attributes": ["effect"]}},
    "component_config_glob": {"switch.*_power": {"override_measurement": "power"}},
}


def test_core_and_ours_store_the_same_points_for_tricky_states(
    influxd: InfluxServer, database: str
) -> None:
    core_db = f"{database}_core"
    influxd.create_database(core_db)
    try:
        ours = write_both(influxd, core_db, database, TRICKY_OPTIONS, TRICKY_STATES)
        assert stored(influxd, database) == stored(influxd, core_db)
        assert len(stored(influxd, core_db)) == len(TRICKY_STATES)
        # What the server keeps is what the model says it keeps.
        assert stored(influxd, database) == _comparable(list(map(_stored_model, ours)))
    finally:
        influxd.drop_database(core_db)


def _stored_model(point: Point | None) -> Point | None:
    return None if point is None else stored_by_influxdb_v1(point)


def test_core_stores_line_breaks_as_backslash_n_and_names_with_doubled_backslashes(
    influxd: InfluxServer, two_databases: tuple[str, str]
) -> None:
    """What the issue saw core store, pinned."""
    core_db, ours_db = two_databases
    write_both(influxd, core_db, ours_db, TRICKY_OPTIONS, TRICKY_STATES[:3])
    by_entity = {p.tags["entity_id"]: p for p in stored(influxd, core_db)}
    assert by_entity["note"].fields["state"] == "first\\nsecond"
    assert by_entity["note"].fields["friendly_name_str"] == "Line one\\nLine two"
    assert by_entity["typed"].fields["state"] == "first\\nsecond"
    assert by_entity["path"].measurement == "x\\\\y"
    assert by_entity["path"].tags["folder"] == "C:\\\\Users\\\\fid"
    assert by_entity["path"].tags["instance"] == "home\\\\one"
    assert by_entity["path"].fields["state"] == "C:\\Users\\fid"


@pytest.mark.parametrize(
    ("state", "core_stores", "ours_stores"),
    [
        # Core sends value=nan: the server refuses the point, its attributes with it.
        (State("sensor.broken", "nan", {"friendly_name": "Broken"}), None, "friendly_name_str"),
        (State("sensor.broken", "-inf", {"friendly_name": "Broken"}), None, "friendly_name_str"),
        # A unit starting with "#" makes core's line a comment.
        (State("sensor.hashed", "1", {"unit_of_measurement": "#"}), None, "_#"),
        # A unit ending in a backslash makes core's line unparsable.
        (State("sensor.trailing", "1", {"unit_of_measurement": "x\\"}), None, "x/"),
    ],
)
def test_points_core_loses_are_stored_by_ours(
    influxd: InfluxServer, database: str, state: State, core_stores: Any, ours_stores: str
) -> None:
    core_db = f"{database}_core"
    influxd.create_database(core_db)
    try:
        write_both(influxd, core_db, database, {}, [state])
        assert stored(influxd, core_db) == []
        (point,) = stored(influxd, database)
        assert ours_stores in (point.measurement, *point.fields)
    finally:
        influxd.drop_database(core_db)


# Every example gets its own entity (and time), so the databases are shared.
_examples = itertools.count()
states = st.builds(
    lambda state, unit, friendly_name, folder, name, value: (
        state,
        {
            "unit_of_measurement": unit,
            "friendly_name": friendly_name,
            "folder": folder,
            name: value,
        },
    ),
    # A non-finite state is a point core loses (test_points_core_loses_are_stored_by_ours).
    state=st.one_of(special_texts, st.floats(allow_nan=False, allow_infinity=False).map(str)),
    # The server drops tabs before a measurement: "\t#" would be a comment, "\t" nothing.
    unit=special_texts.filter(lambda text: not text.startswith("\t")),
    friendly_name=special_texts,
    folder=special_texts,
    # SELECT * answers a field named only by white space as "val0".
    name=special_texts.filter(str.strip),
    value=st.one_of(special_texts, st.integers(-(2**53), 2**53), st.floats(allow_nan=False)),
)


@pytest.fixture
def two_databases(influxd: InfluxServer, database: str) -> Iterator[tuple[str, str]]:
    core_db = f"{database}_core"
    influxd.create_database(core_db)
    yield core_db, database
    influxd.drop_database(core_db)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(examples=st.lists(states, min_size=1, max_size=5))
def test_core_and_ours_store_the_same_points_for_any_state(
    influxd: InfluxServer, two_databases: tuple[str, str], examples: list[tuple[str, dict]]
) -> None:
    core_db, ours_db = two_databases
    number = next(_examples)
    entity_states = [
        State(f"sensor.fuzz_{number}_{index}", text, attributes)
        for index, (text, attributes) in enumerate(examples)
    ]
    ours = write_both(influxd, core_db, ours_db, {"tags_attributes": ["folder"]}, entity_states)
    where = f'WHERE "entity_id" =~ /^fuzz_{number}_/'
    core = stored(influxd, core_db, where)
    assert stored(influxd, ours_db, where) == core
    assert core == _comparable(list(map(_stored_model, ours)))


# --- The transform, on what the server really keeps ---

OVERRIDE_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "measurement_attr": st.sampled_from(
            ["unit_of_measurement", "domain__device_class", "entity_id"]
        ),
        "tags_attributes": st.just(["folder"]),
        "tags": st.just({"instance": "home\\one"}),
        "component_config_glob": st.just(
            {"sensor.fuzz_*_0": {"override_measurement": "glob\\measure"}}
        ),
        "component_config_domain": st.just({"sensor": {"ignore_attributes": ["brightness"]}}),
    },
)
optimized_states = st.builds(
    lambda state, unit, friendly_name, mode, brightness, extra: (
        state,
        {
            "unit_of_measurement": unit,
            "friendly_name": friendly_name,
            "hvac_mode": mode,
            "brightness": brightness,
            "device_class": extra,
            "folder": extra,
        },
    ),
    state=st.one_of(
        special_texts,
        st.sampled_from(["on", "off", "heat"]),
        st.floats(allow_nan=False, allow_infinity=False).map(str),
    ),
    unit=special_texts.filter(lambda text: not text.startswith("\t")),
    friendly_name=special_texts,
    mode=special_texts,
    brightness=st.one_of(st.integers(0, 255), special_texts),
    extra=special_texts,
)


@pytest.fixture
async def client(influxd: InfluxServer, database: str) -> AsyncIterator[InfluxClient]:
    async with aiohttp.ClientSession() as session:
        yield admin_client(session, influxd, database)


async def _read_back(
    client: InfluxClient, database: str, object_id: str, fields: Collection[str] | None = None
) -> list[Point]:
    """The points of one entity in every measurement, as the backfill reads them."""
    found = []
    for measurement in await client.measurements(database):
        for entity_tag in (object_id, f"sensor.{object_id}"):
            async for block in client.read_series(
                measurement, 0, 2**62, database, where={"entity_id": {entity_tag}}, fields=fields
            ):
                found += block.points()
    return found


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(options=OVERRIDE_OPTIONS, example=optimized_states)
async def test_the_backfill_of_what_core_stored_is_what_the_live_writer_stores(
    influxd: InfluxServer,
    client: InfluxClient,
    three_databases: tuple[str, str, str],
    options: dict[str, Any],
    example: tuple[str, dict[str, Any]],
) -> None:
    """Core's history, read back from the server and transformed, lands exactly as the live
    optimized writer's point for the same state lands."""
    core_db, live_db, backfill_db = three_databases
    object_id = f"fuzz_{next(_examples)}_0"
    state = State(f"sensor.{object_id}", *example)
    write_both(influxd, core_db, f"{core_db}_ours", options, [state])
    optimized_options = OptimizedOptions.from_options(
        options | {"allowed_attributes": {"hvac_mode": "str", "brightness": "float"}}
    )
    live = OptimizedLayout(optimized_options).point(state, START)
    if live is not None and (line := encode(live)):
        influxd.write(line, live_db)
    transform = LegacyTransform(LegacyOptions.from_options(options), optimized_options)
    history = await _read_back(client, core_db, object_id, transform.fields_read)
    lines = [line for p in history if (o := transform(p)) and (line := encode(o))]
    if lines:
        influxd.write("\n".join(lines), backfill_db)
    backfilled = await _read_back(client, backfill_db, object_id)
    assert backfilled == await _read_back(client, live_db, object_id)
    assert len(backfilled) == (live is not None)


@pytest.fixture
def three_databases(influxd: InfluxServer, database: str) -> Iterator[tuple[str, str, str]]:
    names = (f"{database}_core", f"{database}_live", f"{database}_backfill")
    for name in (*names, f"{database}_core_ours"):
        influxd.create_database(name)
    yield names
    for name in (*names, f"{database}_core_ours"):
        influxd.drop_database(name)
