"""The in-memory InfluxDB keeps and refuses what influxd 1.6 keeps and refuses.

The glue tests of this tier are only as good as the fake: here it is held to influxd's
behaviour as the real-server tier knows it (``stored_by_influxdb_v1`` is checked against
influxd in tests/test_core_bytes.py; the error texts are influxd's own).
"""

from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.influx import (
    Aggregate,
    ApiVersion,
    CannotConnect,
    DatabaseNotFound,
    InvalidAuth,
    PointsRejected,
    QueryFailed,
    ServerSettings,
    WrongApiVersion,
)
from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    as_written,
    encode,
    encode_like_core_v1,
    stored_by_influxdb_v1,
)

from ..fake_influx import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DAY_NS,
    FakeInfluxClient,
    FakeInfluxServer,
    parse_body,
)
from ..helpers import run_in_own_loop
from ..test_core_bytes import _SPECIALS, special_texts

# Monday 2025-03-31 00:00 UTC: a shard group starts here.
MONDAY_NS = 1_743_379_200 * 10**9


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """No Home Assistant here: the fake alone."""


def client_for(server: FakeInfluxServer, **settings: Any) -> FakeInfluxClient:
    values: dict[str, Any] = {
        "api_version": ApiVersion.V1,
        "url": server.url,
        "database": "db",
        "username": ADMIN_USER,
        "password": ADMIN_PASSWORD,
    } | settings
    return server.create_client(None, ServerSettings(**values))  # type: ignore[arg-type]


@pytest.fixture
def server() -> FakeInfluxServer:
    found = FakeInfluxServer()
    found.create_database("db")
    return found


# --- Line protocol ---

# The names core's client writes that influxd keeps as written (tests/test_core_bytes.py
# holds that against the real server).
names = special_texts
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(st.sampled_from(list(_SPECIALS)), max_size=10),
)


@settings(max_examples=100, deadline=None)
@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, values, min_size=1, max_size=4),
)
def test_a_line_core_writes_is_stored_as_influxd_stores_it(
    measurement: str, tags: dict[str, str], fields: dict[str, Any]
) -> None:
    point = Point(measurement, tags, fields, 1_743_508_800_123_456_000)
    line = encode_like_core_v1(point)
    assert line is not None
    parsed, failed = parse_body(line.encode())
    expected = stored_by_influxdb_v1(point)
    assert expected is not None
    assert failed == []
    assert [(p.measurement, dict(p.tags), dict(p.fields), p.time_ns) for p in parsed] == [
        (expected.measurement, dict(expected.tags), dict(expected.fields), expected.time_ns)
    ]


@settings(max_examples=100, deadline=None)
@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, values, min_size=1, max_size=4),
)
def test_a_line_ours_writes_reads_back_as_written(
    measurement: str, tags: dict[str, str], fields: dict[str, Any]
) -> None:
    point = Point(measurement, tags, fields, -5)
    line = encode(point)
    assert line is not None
    parsed, failed = parse_body(line.encode())
    expected = as_written(point)
    assert failed == []
    assert [(p.measurement, dict(p.tags), dict(p.fields)) for p in parsed] == [
        (expected.measurement, dict(expected.tags), dict(expected.fields))
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("bad line", "invalid field format"),
        ("m value= 5", "missing field value"),
        ("m =1 5", "missing field key"),
        ("m, value=1 5", "missing tag key"),
        ("m,t= value=1 5", "missing tag value"),
        ('m value="open 5', "unbalanced quotes"),
        ("m value=1 abc", "bad timestamp"),
        ("m value=1 5 extra", "point is invalid"),
        ("m value=1u 5", "invalid number"),
        ("m value=nan 5", "invalid number"),
        ("m value=tRue 5", "invalid boolean"),
    ],
)
def test_unparsable_lines_get_influxds_reason(line: str, reason: str) -> None:
    assert parse_body(line.encode()) == ([], [f"unable to parse '{line}': {reason}"])


def test_blank_lines_comments_and_a_missing_time_are_accepted() -> None:
    points, failed = parse_body(b"\n  \n# a comment\nm value=1\n", now_ns=42)
    assert failed == []
    assert points == [Point("m", {}, {"value": 1.0}, 42)]


# --- Writes ---


def test_a_field_type_is_fixed_per_weekly_shard(server: FakeInfluxServer) -> None:
    client = client_for(server)
    run_in_own_loop(client.write(f"m value=1.5 {MONDAY_NS}".encode()))
    with pytest.raises(PointsRejected) as refused:
        run_in_own_loop(client.write(f'm value="on" {MONDAY_NS + 6 * DAY_NS}'.encode()))
    assert str(refused.value) == (
        'partial write: field type conflict: input field "value" on measurement "m" is type '
        "string, already exists as type float dropped=1"
    )
    # The Sunday before is another shard: the string is stored there.
    run_in_own_loop(client.write(f'm value="on" {MONDAY_NS - 1}'.encode()))
    assert [p.fields["value"] for p in server.points("db")] == ["on", 1.5]


def test_a_partial_write_stores_the_valid_points_and_counts_the_dropped(
    server: FakeInfluxServer,
) -> None:
    client = client_for(server)
    body = b'm,e=a value=1 10\nm,e=b value="x" 20\nm,e=c value=2 30\nm,e=d value=false 40'
    with pytest.raises(PointsRejected) as refused:
        run_in_own_loop(client.write(body))
    assert str(refused.value).endswith("dropped=2")
    assert [(p.tags["e"], p.fields["value"]) for p in server.points("db")] == [
        ("a", 1.0),
        ("c", 2.0),
    ]
    # What the writers' bisection reads from it: halves to send again, none when all refused.
    lines = body.split(b"\n")
    assert refused.value.halves(lines) == (lines[:2], lines[2:])
    with pytest.raises(PointsRejected) as all_refused:
        run_in_own_loop(client.write(b'm value="y" 50'))
    assert all_refused.value.halves([b'm value="y" 50']) is None


def test_a_write_with_an_unparsable_line_keeps_the_others(server: FakeInfluxServer) -> None:
    with pytest.raises(PointsRejected) as refused:
        run_in_own_loop(client_for(server).write(b"m value=1 10\nbad line\nm value=2 20"))
    assert str(refused.value) == (
        "partial write: unable to parse 'bad line': invalid field format dropped=0"
    )
    assert [p.time_ns for p in server.points("db")] == [10, 20]


def test_a_rewrite_of_a_series_and_time_merges_its_fields(server: FakeInfluxServer) -> None:
    client = client_for(server)
    run_in_own_loop(client.write(b"m value=1 10"))
    run_in_own_loop(client.write(b"m value=2,other=3 10"))
    assert server.points("db") == [Point("m", {}, {"value": 2.0, "other": 3.0}, 10)]


def test_time_as_a_tag_refuses_the_point_and_as_a_field_is_dropped(
    server: FakeInfluxServer,
) -> None:
    client = client_for(server)
    with pytest.raises(PointsRejected, match='invalid tag key: input tag "time"'):
        run_in_own_loop(client.write(b"m,time=1 value=1 10"))
    run_in_own_loop(client.write(b"m time=1,value=5 10"))
    assert server.points("db") == [Point("m", {}, {"value": 5.0}, 10)]


# --- Reaching the server ---


def test_credentials_are_checked_but_not_for_a_ping(server: FakeInfluxServer) -> None:
    wrong = client_for(server, password="wrong")
    run_in_own_loop(wrong.ping())
    with pytest.raises(InvalidAuth, match="authorization failed"):
        run_in_own_loop(wrong.validate())
    with pytest.raises(InvalidAuth, match="unable to parse authentication credentials"):
        run_in_own_loop(client_for(server, username=None, password=None).write(b"m value=1"))
    assert server.points("db") == []


def test_a_missing_database_is_reported_by_writes_and_reads(server: FakeInfluxServer) -> None:
    client = client_for(server, database="nope")
    with pytest.raises(DatabaseNotFound):
        run_in_own_loop(client.validate())
    with pytest.raises(DatabaseNotFound, match='database not found: "nope"'):
        run_in_own_loop(client.write(b"m value=1"))
    with pytest.raises(DatabaseNotFound):
        run_in_own_loop(client.field_keys("m"))
    # As influxd: SHOW MEASUREMENTS on a missing database answers nothing.
    assert run_in_own_loop(client.measurements()) == []


def test_a_stopped_server_is_unreachable_until_started(server: FakeInfluxServer) -> None:
    client = client_for(server)
    server.stop()
    with pytest.raises(CannotConnect):
        run_in_own_loop(client.ping())
    with pytest.raises(CannotConnect):
        run_in_own_loop(client.write(b"m value=1 10"))
    server.start()
    run_in_own_loop(client.write(b"m value=1 10"))
    assert len(server.points("db")) == 1


def test_nothing_answers_at_another_url(server: FakeInfluxServer) -> None:
    with pytest.raises(CannotConnect):
        run_in_own_loop(client_for(server, url="http://elsewhere:8086").ping())


def test_a_2x_client_finds_a_1x_server() -> None:
    server = FakeInfluxServer()
    client = client_for(server, api_version=ApiVersion.V2, token="t", organization="o")
    with pytest.raises(WrongApiVersion):
        run_in_own_loop(client.validate())


# --- Reads ---


LEGACY = (
    b'W,domain=sensor,entity_id=a value=1,state="1" 1000\n'
    b"W,domain=sensor,entity_id=a value=3 3000\n"
    b'W,domain=sensor,entity_id=b state="off" 2000\n'
    b"W,domain=light,entity_id=c value=10 5000"
)


def test_aggregates_group_by_tags_and_windows_like_influxql(server: FakeInfluxServer) -> None:
    client = client_for(server)
    run_in_own_loop(client.write(LEGACY))

    def rows(field: str, function: Aggregate, **options: Any) -> list[tuple[Any, ...]]:
        found = run_in_own_loop(
            client.aggregate("W", field, function, start_ns=0, end_ns=10_000, **options)
        )
        return [(dict(r.tags), r.time_ns, r.value) for r in found]

    by_entity = {"group_by": ("domain", "entity_id")}
    assert rows("value", Aggregate.COUNT, **by_entity) == [
        ({"domain": "light", "entity_id": "c"}, 0, 1),
        ({"domain": "sensor", "entity_id": "a"}, 0, 2),
    ]
    assert rows("state", Aggregate.LAST, **by_entity) == [
        ({"domain": "sensor", "entity_id": "a"}, 1000, "1"),
        ({"domain": "sensor", "entity_id": "b"}, 2000, "off"),
    ]
    assert rows("value", Aggregate.COUNT, every_ns=2000) == [
        ({}, 0, 1),
        ({}, 2000, 1),
        ({}, 4000, 1),
    ]
    assert rows("value", Aggregate.MEAN, where={"domain": ["sensor"]}) == [({}, 0, 2.0)]
    with pytest.raises(QueryFailed, match="unsupported mean iterator type"):
        rows("state", Aggregate.MEAN)


def test_series_are_read_by_tags_with_every_field_column(server: FakeInfluxServer) -> None:
    client = client_for(server)
    run_in_own_loop(client.write(LEGACY))

    async def blocks() -> list[Any]:
        return [b async for b in client.read_series("W", 0, 4000, where={"domain": ["sensor"]})]

    found = run_in_own_loop(blocks())
    assert [(dict(b.tags), b.fields, b.rows) for b in found] == [
        (
            {"domain": "sensor", "entity_id": "a"},
            ("state", "value"),
            [[1000, "1", 1.0], [3000, None, 3.0]],
        ),
        ({"domain": "sensor", "entity_id": "b"}, ("state", "value"), [[2000, "off", None]]),
    ]
    assert run_in_own_loop(client.tag_values("entity_id", "W")) == ["a", "b", "c"]


def test_a_delete_touches_only_the_series_and_range_it_names(server: FakeInfluxServer) -> None:
    client = client_for(server)
    run_in_own_loop(client.write(LEGACY))
    run_in_own_loop(client.delete_range("W", {"entity_id": "a"}, start_ns=0, end_ns=2000))
    # By series (their tags sorted, light before sensor), then time.
    assert [(p.tags["entity_id"], p.time_ns) for p in server.points("db")] == [
        ("c", 5000),
        ("a", 3000),
        ("b", 2000),
    ]
    with pytest.raises(ValueError, match="at least one tag"):
        run_in_own_loop(client.delete_range("W", {}, start_ns=0, end_ns=1))


def test_arbitrary_influxql_is_not_faked(server: FakeInfluxServer) -> None:
    with pytest.raises(NotImplementedError, match="arbitrary InfluxQL"):
        run_in_own_loop(client_for(server).query('SELECT * FROM "W"'))
