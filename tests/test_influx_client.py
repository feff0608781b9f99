"""The InfluxDB client interface, run against the real influxd (1.x) and the 2.x emulator."""

from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from custom_components.ha_ingestor.influx import (
    ApiVersion,
    CannotConnect,
    DatabaseNotFound,
    InfluxClient,
    InvalidAuth,
    PointsRejected,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.influx.v1 import CHUNK_SIZE, quote_ident, quote_literal
from custom_components.ha_ingestor.influx.v2 import flux_string, parse_rfc3339_ns, rfc3339
from custom_components.ha_ingestor.line_protocol import Point, encode_batch

from .conftest import V2_ORG as ORG, V2_TOKEN as TOKEN
from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer, free_port
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
        return ServerSettings(
            api_version=ApiVersion.V1,
            url=influxd.url,
            database=database,
            username=ADMIN_USER,
            password=ADMIN_PASSWORD,
        )
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
