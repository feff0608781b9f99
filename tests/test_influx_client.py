"""The InfluxDB client interface, run against the real influxd (1.x) and the 2.x emulator."""

from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from custom_components.ha_ingestor.engine.influx import (
    Aggregate,
    AggregateRow,
    ApiVersion,
    CannotConnect,
    DatabaseNotFound,
    InfluxClient,
    InvalidAuth,
    PointsRejected,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.influx.v1 import CHUNK_SIZE, quote_ident, quote_literal
from custom_components.ha_ingestor.engine.influx.v2 import flux_string, parse_rfc3339_ns, rfc3339
from custom_components.ha_ingestor.engine.line_protocol import Point, encode_batch

from .conftest import V2_ORG as ORG, V2_TOKEN as TOKEN
from .helpers import admin_settings
from .influx_server import InfluxServer, free_port
from .influx_v2_emulator import InfluxV2Emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture(params=[ApiVersion.V1, ApiVersion.V2], ids=["v1", "v2-emulated"])
async def settings(
    request: pytest.FixtureRequest,
    influxd: InfluxServer,
    database: str,
    v2_emulator: InfluxV2Emulator,
) -> ServerSettings:
    if request.param is ApiVersion.V1:
        return admin_settings(influxd, database)
    return ServerSettings(
        api_version=ApiVersion.V2,
        url=v2_emulator.url,
        database=database,
        token=TOKEN,
        organization=ORG,
    )


@pytest.fixture
def client(session: aiohttp.ClientSession, settings: ServerSettings) -> InfluxClient:
    return create_client(session, settings)


def wrong_credentials(settings: ServerSettings) -> ServerSettings:
    if settings.api_version is ApiVersion.V1:
        return replace(settings, password="wrong")
    return replace(settings, token="wrong")


async def test_validate_accepts_a_working_connection(client: InfluxClient) -> None:
    await client.ping()
    await client.validate()


async def test_validate_rejects_wrong_credentials(
    session: aiohttp.ClientSession, settings: ServerSettings
) -> None:
    with pytest.raises(InvalidAuth):
        await create_client(session, wrong_credentials(settings)).validate()


async def test_validate_reports_a_missing_database(
    session: aiohttp.ClientSession, settings: ServerSettings
) -> None:
    with pytest.raises(DatabaseNotFound):
        await create_client(session, replace(settings, database="nope")).validate()


async def test_unreachable_server_is_cannot_connect(
    session: aiohttp.ClientSession, settings: ServerSettings
) -> None:
    dead = create_client(session, replace(settings, url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(CannotConnect):
        await dead.ping()
    with pytest.raises(CannotConnect):
        await dead.write(b"m v=1 1")
    with pytest.raises(CannotConnect):
        await dead.validate()


async def test_points_of_every_type_round_trip(client: InfluxClient) -> None:
    hostile = 'quote " back\\slash, comma = equals\nnew line 🌡️ °C'
    points = [
        Point(
            "°C",
            {"domain": "sensor", "entity_id": "küche_temp", "odd tag": hostile},
            {
                "value": 21.5 + i,
                "count": i,
                "ok": i % 2 == 0,
                "state": hostile,
                "friendly_name_str": 'Küche "Temp"',
            },
            1_700_000_000_000_000_000 + i * 1_000_000_007,
        )
        for i in range(5)
    ]
    await client.write(encode_batch(points))
    read = [p async for p in client.read_points("°C", 0, 2_000_000_000_000_000_000)]
    assert read == [
        replace(p, tags={**p.tags, "odd tag": hostile.replace("\n", " ")}) for p in points
    ]
    assert await client.measurements() == ["°C"]


async def test_read_window_excludes_its_end(client: InfluxClient) -> None:
    await client.write(b"m v=1.0 1000\nm v=2.0 2000\nm v=3.0 3000")
    read = [p.fields["v"] async for p in client.read_points("m", 1000, 3000)]
    assert read == [1.0, 2.0]


async def test_reading_streams_more_than_one_chunk(client: InfluxClient) -> None:
    total = CHUNK_SIZE * 2 + 123
    body = "\n".join(f"m,entity_id=e{i % 7} value={i}.5 {i + 1}" for i in range(total))
    await client.write(body.encode())
    seen = 0
    value_sum = 0.0
    async for point in client.read_points("m", 0, total + 10):
        seen += 1
        value_sum += float(point.fields["value"])
    assert seen == total
    assert value_sum == sum(i + 0.5 for i in range(total))


async def test_type_conflict_is_points_rejected_and_good_points_land(
    client: InfluxClient,
) -> None:
    await client.write(b"m value=1.0 1")
    with pytest.raises(PointsRejected, match="conflict"):
        await client.write(b'm value=2.0 2\nm value="text" 3\nm value=4.0 4')
    read = [p.fields["value"] async for p in client.read_points("m", 0, 10)]
    assert read == [1.0, 2.0, 4.0]


async def test_unparsable_line_is_points_rejected(client: InfluxClient) -> None:
    with pytest.raises(PointsRejected):
        await client.write(b"m value= 1")


async def test_writing_to_a_missing_database_says_so(client: InfluxClient) -> None:
    with pytest.raises(DatabaseNotFound):
        await client.write(b"m v=1 1", database="does_not_exist")


async def test_wrong_credentials_cannot_write(
    session: aiohttp.ClientSession, settings: ServerSettings
) -> None:
    with pytest.raises(InvalidAuth):
        await create_client(session, wrong_credentials(settings)).write(b"m v=1 1")


async def test_create_and_drop_database(client: InfluxClient) -> None:
    name = "created_by_client"
    assert not await client.database_exists(name)
    await client.create_database(name)
    await client.create_database(name)
    assert await client.database_exists(name)
    await client.write(b"m v=1 1", database=name)
    assert [p async for p in client.read_points("m", 0, 10, database=name)]
    await client.drop_database(name)
    await client.drop_database(name)
    assert not await client.database_exists(name)


DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
# A day boundary, so per-day windows start here.
T0 = 19_700 * DAY

SAMPLE = "\n".join(
    [
        f'°C,domain=sensor,entity_id=kitchen value=20.5,friendly_name_str="K" {T0 + 1}',
        f"°C,domain=sensor,entity_id=kitchen value=21.5 {T0 + HOUR + 2}",
        f"°C,domain=sensor,entity_id=kitchen value=23.0 {T0 + DAY + 3}",
        f"°C,domain=sensor,entity_id=hall value=18.0 {T0 + 4}",
        f'°C,domain=climate,entity_id=hall state="heat",value=1.0 {T0 + 5}',
        f"%,domain=sensor,entity_id=hall value=40.0 {T0 + DAY + 6}",
        f"°C,entity_id=sensor.kitchen value=20.5 {T0 + 7}",
    ]
).encode()


type Groups = dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, object]]]


def by_group(rows: list[AggregateRow]) -> Groups:
    result: Groups = {}
    for row in rows:
        key = (row.measurement, tuple(sorted(row.tags.items())))
        result.setdefault(key, []).append((row.time_ns, row.value))
    return result


async def test_read_series_streams_raw_rows_series_by_series(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    blocks = [b async for b in client.read_series("°C", T0, T0 + 2 * DAY)]
    blocks.sort(key=lambda b: (b.tags.get("domain", "~"), b.tags["entity_id"]))
    assert [dict(b.tags) for b in blocks] == [
        {"domain": "climate", "entity_id": "hall"},
        {"domain": "sensor", "entity_id": "hall"},
        {"domain": "sensor", "entity_id": "kitchen"},
        {"entity_id": "sensor.kitchen"},
    ]
    kitchen = blocks[2]
    assert [row[0] for row in kitchen.rows] == [T0 + 1, T0 + HOUR + 2, T0 + DAY + 3]
    assert [p.fields for p in kitchen.points()] == [
        {"value": 20.5, "friendly_name_str": "K"},
        {"value": 21.5},
        {"value": 23.0},
    ]
    assert all(isinstance(p.fields["value"], float) for p in blocks[0].points())


async def test_reads_can_ask_for_some_fields_only(client: InfluxClient) -> None:
    """Only the named fields come back, so points holding none of them do not."""
    await client.write(SAMPLE)
    read = sorted(
        [
            (p.tags["entity_id"], p.time_ns, dict(p.fields))
            async for p in client.read_points(
                "°C", T0, T0 + 2 * DAY, fields={"friendly_name_str", "state", "missing"}
            )
        ]
    )
    assert read == [
        ("hall", T0 + 5, {"state": "heat"}),
        ("kitchen", T0 + 1, {"friendly_name_str": "K"}),
    ]
    assert [p async for p in client.read_points("°C", T0, T0 + 2 * DAY, fields={"missing"})] == []
    assert [p async for p in client.read_points("°C", T0, T0 + 2 * DAY, fields=())] == []


async def test_reads_can_keep_only_series_with_given_tags(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    read = [
        (p.tags["domain"], p.tags["entity_id"], p.time_ns)
        async for p in client.read_points(
            "°C",
            T0,
            T0 + 2 * DAY,
            where={"entity_id": ["hall", "kitchen"], "domain": ["sensor"]},
        )
    ]
    assert sorted(read) == [
        ("sensor", "hall", T0 + 4),
        ("sensor", "kitchen", T0 + 1),
        ("sensor", "kitchen", T0 + HOUR + 2),
        ("sensor", "kitchen", T0 + DAY + 3),
    ]


async def test_field_keys_and_tag_values_describe_a_measurement(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    assert sorted(await client.field_keys("°C")) == ["friendly_name_str", "state", "value"]
    assert sorted(await client.tag_values("domain", "°C")) == ["climate", "sensor"]
    assert sorted(await client.tag_values("entity_id", "°C")) == [
        "hall",
        "kitchen",
        "sensor.kitchen",
    ]
    assert await client.tag_values("domain", "missing") == []


async def test_aggregate_counts_per_tag_group(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    rows = await client.aggregate(
        "°C",
        "value",
        Aggregate.COUNT,
        start_ns=T0,
        end_ns=T0 + 2 * DAY,
        group_by=("domain", "entity_id"),
    )
    assert by_group(rows) == {
        ("°C", (("domain", "climate"), ("entity_id", "hall"))): [(T0, 1)],
        ("°C", (("domain", "sensor"), ("entity_id", "hall"))): [(T0, 1)],
        ("°C", (("domain", "sensor"), ("entity_id", "kitchen"))): [(T0, 3)],
        ("°C", (("entity_id", "sensor.kitchen"),)): [(T0, 1)],
    }


async def test_aggregate_counts_per_day_leave_out_empty_days(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    rows = await client.aggregate(
        ["°C", "%"],
        "value",
        Aggregate.COUNT,
        start_ns=T0 - 5 * DAY,
        end_ns=T0 + 5 * DAY,
        group_by=("entity_id",),
        every_ns=DAY,
        where={"domain": ["sensor"]},
    )
    assert by_group(rows) == {
        ("%", (("entity_id", "hall"),)): [(T0 + DAY, 1)],
        ("°C", (("entity_id", "hall"),)): [(T0, 1)],
        ("°C", (("entity_id", "kitchen"),)): [(T0, 1 + 1), (T0 + DAY, 1)],
    }


async def test_aggregate_mean_per_hour(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    rows = await client.aggregate(
        "°C",
        "value",
        Aggregate.MEAN,
        start_ns=T0,
        end_ns=T0 + DAY,
        every_ns=HOUR,
        where={"entity_id": ["kitchen", "hall"], "domain": ["sensor"]},
    )
    assert [(r.time_ns, r.value) for r in rows] == [(T0, 19.25), (T0 + HOUR, 21.5)]


async def test_aggregate_first_and_last_give_the_point_times(client: InfluxClient) -> None:
    await client.write(SAMPLE)
    first = await client.aggregate("°C", "value", Aggregate.FIRST, start_ns=0, end_ns=T0 + 10 * DAY)
    last = await client.aggregate(
        "°C", "value", Aggregate.LAST, start_ns=0, end_ns=T0 + 10 * DAY, group_by=("domain",)
    )
    assert [(r.time_ns, r.value) for r in first] == [(T0 + 1, 20.5)]
    assert by_group(last) == {
        ("°C", (("domain", "climate"),)): [(T0 + 5, 1.0)],
        ("°C", (("domain", "sensor"),)): [(T0 + DAY + 3, 23.0)],
        ("°C", ()): [(T0 + 7, 20.5)],
    }
    strings = await client.aggregate(
        "°C", "state", Aggregate.LAST, start_ns=0, end_ns=T0 + 10 * DAY
    )
    assert [(r.time_ns, r.value) for r in strings] == [(T0 + 5, "heat")]
    assert await client.aggregate("°C", "nope", Aggregate.COUNT, start_ns=0, end_ns=T0) == []


async def test_delete_range_removes_only_the_matching_series_inside_the_range(
    client: InfluxClient,
) -> None:
    await client.write(SAMPLE)
    everything = {"start_ns": 0, "end_ns": T0 + 10 * DAY}
    await client.delete_range("°C", {"entity_id": "sensor.kitchen"}, **everything)
    # Half-open: the point at T0 + HOUR + 2 is the range's end and stays.
    await client.delete_range(
        "°C", {"domain": "sensor", "entity_id": "kitchen"}, start_ns=T0, end_ns=T0 + HOUR + 2
    )
    await client.delete_range("°C", {"domain": "sensor", "entity_id": "hall"}, **everything)
    left = sorted(
        [
            (p.tags.get("domain", ""), p.tags["entity_id"], p.time_ns)
            async for p in client.read_points("°C", 0, T0 + 10 * DAY)
        ]
    )
    assert left == [
        ("climate", "hall", T0 + 5),
        ("sensor", "kitchen", T0 + HOUR + 2),
        ("sensor", "kitchen", T0 + DAY + 3),
    ]
    assert [p async for p in client.read_points("%", 0, T0 + 10 * DAY)]
    # An empty range and a missing measurement delete nothing and do not fail.
    await client.delete_range("°C", {"entity_id": "hall"}, start_ns=T0 + 9, end_ns=T0 + 9)
    await client.delete_range("missing", {"entity_id": "hall"}, **everything)
    with pytest.raises(ValueError):
        await client.delete_range("°C", {}, **everything)


def test_influxql_quoting_cannot_end_a_statement() -> None:
    assert quote_ident('a"; DROP DATABASE x; --') == '"a\\"; DROP DATABASE x; --"'
    assert quote_ident("back\\slash") == '"back\\\\slash"'
    assert quote_literal("it's\n") == "'it\\'s\\n'"


def test_flux_quoting_cannot_end_a_string() -> None:
    assert flux_string('a") |> drop() //') == '"a\\") |> drop() //"'
    assert flux_string("${secret}") == '"\\${secret}"'


def test_rfc3339_keeps_nanoseconds() -> None:
    assert rfc3339(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert parse_rfc3339_ns("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456_789
    assert parse_rfc3339_ns("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("lines", "reason", "expected"),
    [
        (["a"], "unable to parse 'a'", None),
        (["a", "b", "c"], "partial write: field type conflict dropped=1", (["a"], ["b", "c"])),
        (["a", "b", "c"], "partial write: points beyond retention policy dropped=3", None),
        (["a", "b"], "unable to parse 'a': missing fields", (["a"], ["b"])),
        ([], "unable to parse", None),
    ],
)
def test_a_refused_write_is_halved_until_each_refused_line_is_alone(
    lines: list[str], reason: str, expected: tuple[list[str], list[str]] | None
) -> None:
    """The one rule the live writer and the backfill both bisect by."""
    assert PointsRejected(reason).halves(lines) == expected


async def test_the_servers_dropped_count_is_what_a_refusal_is_halved_by(
    client: InfluxClient, influxd: InfluxServer, database: str
) -> None:
    """Real partial writes: one point of three conflicts (halve), then all three (none)."""
    await client.write(b"m v=1 1", database)
    some = b'm v=2 2\nm v="text" 3\nm v=4 4'.split(b"\n")
    with pytest.raises(PointsRejected) as raised:
        await client.write(b"\n".join(some), database)
    assert raised.value.halves(some) == (some[:1], some[1:])
    every = b'm v="a" 5\nm v="b" 6\nm v="c" 7'.split(b"\n")
    with pytest.raises(PointsRejected) as raised:
        await client.write(b"\n".join(every), database)
    assert "dropped=3" in str(raised.value)
    assert raised.value.halves(every) is None
