"""The line-protocol encoder: exact escaping, checked against the real influxd."""

import itertools

import aiohttp
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.engine.line_protocol import (
    Point,
    encode,
    encode_batch,
    is_representable,
    sanitize_name,
)

from .helpers import admin_client
from .influx_server import InfluxServer

_times = itertools.count(1_600_000_000_000_000_000, 1_000)


def test_measurement_escapes_commas_and_spaces() -> None:
    line = encode(Point("°C, kitchen", {}, {"value": 1.5}, 7))
    assert line == r"°C\,\ kitchen value=1.5 7"


def test_tags_are_sorted_and_escaped() -> None:
    point = Point("m", {"z": "a=b", "a": "x,y z"}, {"v": 1.0}, 1)
    assert encode(point) == r"m,a=x\,y\ z,z=a\=b v=1.0 1"


def test_string_field_escapes_quotes_and_backslashes() -> None:
    point = Point("m", {}, {"state_str": 'say "hi" \\o/'}, 1)
    assert encode(point) == r'm state_str="say \"hi\" \\o/" 1'


def test_field_types_are_encoded_distinctly() -> None:
    point = Point("m", {}, {"f": 1.0, "i": 3, "b": True, "s": "1"}, 1)
    assert encode(point) == 'm f=1.0,i=3i,b=true,s="1" 1'


def test_nan_and_infinity_are_dropped() -> None:
    point = Point("m", {}, {"a": float("nan"), "b": float("inf"), "c": 2.0}, 1)
    assert encode(point) == "m c=2.0 1"


def test_point_without_writable_fields_is_skipped() -> None:
    assert encode(Point("m", {"t": "x"}, {"a": float("nan")}, 1)) is None
    assert encode_batch([Point("m", {}, {"a": float("nan")}, 1)]) == b""


def test_empty_tag_values_are_left_out() -> None:
    assert encode(Point("m", {"empty": "", "t": "x"}, {"v": 1.0}, 1)) == "m,t=x v=1.0 1"


def test_newline_in_a_name_becomes_a_space() -> None:
    assert sanitize_name("a\nb\rc") == "a b c"
    assert "\n" not in (encode(Point("m\nx", {"t\n": "v\n"}, {"f\n": 1.0}, 1)) or "")


def test_backslash_before_a_separator_is_not_an_escape() -> None:
    assert sanitize_name("a\\") == "a/"
    assert sanitize_name("a\\ b") == "a/ b"
    assert sanitize_name("a\\b") == "a\\b"


def test_representable_names() -> None:
    assert is_representable("sensor.kitchen °C")
    assert not is_representable("a\nb")
    assert not is_representable("")


# Arbitrary text without surrogates (which UTF-8 cannot carry) and without "time", which
# InfluxDB reserves as a key.
_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
_name = _text.filter(lambda s: s.strip() != "" and sanitize_name(s) not in ("time",))


@pytest.fixture
async def client(influxd: InfluxServer, database: str):
    async with aiohttp.ClientSession() as session:
        yield admin_client(session, influxd, database)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    measurement=_name,
    tag_key=_name,
    tag_value=_name,
    field_key=_name,
    string_value=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    number=st.floats(allow_nan=False, allow_infinity=False),
)
async def test_arbitrary_strings_round_trip_through_influxd(
    client,
    measurement: str,
    tag_key: str,
    tag_value: str,
    field_key: str,
    string_value: str,
    number: float,
) -> None:
    """Whatever the names hold, one point lands as one point; text fields come back exact."""
    if sanitize_name(field_key) == sanitize_name("n_" + field_key):
        return
    time_ns = next(_times)
    point = Point(
        measurement,
        {tag_key: tag_value},
        {field_key: string_value, "n_" + field_key: number},
        time_ns,
    )
    await client.write(encode_batch([point]))
    stored_measurement = sanitize_name(measurement)
    if stored_measurement.startswith("#"):
        stored_measurement = "_" + stored_measurement
    read = [p async for p in client.read_points(stored_measurement, time_ns, time_ns + 1)]
    assert len(read) == 1
    (back,) = read
    assert back.time_ns == time_ns
    assert back.tags == {sanitize_name(tag_key): sanitize_name(tag_value)}
    assert back.fields == {
        sanitize_name(field_key): string_value,
        sanitize_name("n_" + field_key): number,
    }
    if is_representable(measurement):
        assert back.measurement == measurement


async def test_a_newline_never_creates_an_extra_point(client) -> None:
    hostile = "x\nbad,line=1 value=666 1\n#comment\n"
    points = [
        Point(hostile, {hostile: hostile}, {hostile: hostile, "value": float(i)}, 10**18 + i)
        for i in range(5)
    ]
    await client.write(encode_batch(points))
    measurements = await client.measurements()
    assert measurements == [sanitize_name(hostile)]
    read = [p async for p in client.read_points(sanitize_name(hostile), 0, 2 * 10**18)]
    assert [p.fields["value"] for p in read] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(p.fields[sanitize_name(hostile)] == hostile for p in read)
