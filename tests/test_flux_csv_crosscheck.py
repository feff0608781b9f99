"""Our Flux annotated-CSV parser and influxdb-client's, fed the same response bytes.

The 2.x client keeps its own incremental parser (benchmarks/flux_parser.py measures why), so
these tests hold it to the library's reading of every answer: generated tables of every type
and shape, error tables, and the emulator's answers to the queries our client really sends.
Where the two may differ by design it is stated here: ours keeps nanoseconds (the library's
datetimes stop at microseconds) and leaves Flux's own columns (result, table, _start, _stop,
_measurement) as text, which the library's converter must read as the value it produced.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
import io
import math
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings, strategies as st
from influxdb_client.client.flux_csv_parser import (
    FluxCsvParser,
    FluxQueryException,
    FluxSerializationMode,
)
from influxdb_client.client.flux_table import FluxColumn, FluxTable
import pytest

from custom_components.ha_ingestor.engine.influx import (
    Aggregate,
    ApiVersion,
    QueryFailed,
    ServerSettings,
    create_client,
)
from custom_components.ha_ingestor.engine.influx._stream import iter_lines
from custom_components.ha_ingestor.engine.influx.v2 import (
    _FLUX_META,
    _AnnotatedCsv,
    _Tag,
    parse_rfc3339_ns,
)

from .conftest import V2_ORG, V2_TOKEN
from .influx_v2_emulator import InfluxV2Emulator

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What Python's datetime (the library's time values) can hold of InfluxDB's time range.
MIN_NS = -9_200_000_000_000_000_000
MAX_NS = 9_200_000_000_000_000_000
DATATYPES = (
    "string",
    "long",
    "unsignedLong",
    "double",
    "boolean",
    "dateTime:RFC3339",
    "dateTime:RFC3339Nano",
)


# --- Both parsers on the same bytes ---


class _Chunks:
    """Stands in for aiohttp's StreamReader: the answer arrives in chunks of one size."""

    def __init__(self, body: bytes, size: int) -> None:
        self._body = body
        self._size = size

    async def iter_any(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), self._size):
            yield self._body[start : start + self._size]


def parse_ours(body: bytes, *, typed: bool, chunk: int = 65_536) -> list[dict[str, Any]]:
    """The rows InfluxV2Client._flux_rows yields for this answer (same splitter, same parser)."""

    async def collect() -> list[dict[str, Any]]:
        parser = _AnnotatedCsv(typed=typed)
        rows = []
        async with aclosing(iter_lines(_Chunks(body, chunk))) as lines:  # type: ignore[arg-type]
            async for line in lines:
                if (row := parser.feed(line.decode())) is not None:
                    rows.append(row)
        return rows

    # A private loop: the test's own loop is not running in a sync test, and must stay set.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(collect())
    finally:
        # A parse that raised leaves the chunk generator suspended; close it on its loop.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def parse_library(body: bytes) -> list[FluxTable]:
    """influxdb-client's tables for this answer, read as its sync query API reads a response."""
    parser = FluxCsvParser(io.BytesIO(body), FluxSerializationMode.tables)
    for _ in parser.generator():
        pass
    return list(parser.tables)


_LIBRARY = FluxCsvParser(io.BytesIO(b""), FluxSerializationMode.stream)


def _microseconds(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def _equal(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(ours, float) and math.isnan(ours)
    return type(ours) is type(theirs) and ours == theirs


def assert_same_value(ours: Any, theirs: Any, column: FluxColumn, *, raw: bool) -> None:
    if raw:
        # Ours keeps the cell's text (defaults applied); the library must read it as it did.
        assert isinstance(ours, str)
        reading = _LIBRARY._to_value(ours, FluxColumn(data_type=column.data_type, default_value=""))
        assert _equal(reading, theirs)
    elif column.data_type.startswith("dateTime"):
        if theirs is None:
            assert ours is None
        else:
            # Ours keeps nanoseconds; the library's datetime truncates them to microseconds.
            assert isinstance(ours, int)
            assert ours // 1000 == _microseconds(theirs)
    elif column.group and column.data_type == "string" and theirs is not None:
        assert type(ours) is _Tag
        assert ours == theirs
    else:
        assert _equal(ours, theirs)


def assert_parsed_alike(body: bytes, *, chunk: int = 65_536) -> int:
    """Both readings of the answer, typed and untyped, agree row by row; returns the rows."""
    theirs = [(table, record) for table in parse_library(body) for record in table.records]
    for typed in (True, False):
        ours = parse_ours(body, typed=typed, chunk=chunk)
        assert len(ours) == len(theirs)
        for row, (table, record) in zip(ours, theirs, strict=True):
            # Ours also names the annotation column (""), always empty in a record.
            assert row.pop("") == ""
            assert list(row) == [column.label for column in table.columns]
            for column in table.columns:
                raw = column.label != "_time" and (not typed or column.label in _FLUX_META)
                assert_same_value(row[column.label], record.values[column.label], column, raw=raw)
    return len(theirs)


# --- Generated answers ---


def flux_floats(value: float) -> list[str]:
    """How a double may be written: Go's shortest positional form, or Python's repr."""
    if math.isnan(value):
        return ["NaN"]
    if math.isinf(value):
        return ["+Inf" if value > 0 else "-Inf"]
    return [format(Decimal(repr(value)), "f"), repr(value)]


def rfc3339_texts(time_ns: int) -> list[str]:
    """RFC 3339 as Flux writes it (trailing zeros trimmed) and with all nine digits."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    trimmed = f"{nanos:09d}".rstrip("0")
    return [f"{stamp}.{trimmed}Z" if trimmed else f"{stamp}Z", f"{stamp}.{nanos:09d}Z"]


times = st.one_of(
    st.integers(MIN_NS, MAX_NS),
    st.integers(MIN_NS // 10**9, MAX_NS // 10**9).map(lambda s: s * 10**9),
)

CELLS: dict[str, st.SearchStrategy[str]] = {
    "string": st.text(max_size=12),
    "long": st.integers(-(2**63), 2**63 - 1).map(str),
    "unsignedLong": st.integers(0, 2**64 - 1).map(str),
    "double": st.floats().flatmap(lambda v: st.sampled_from(flux_floats(v))),
    "boolean": st.sampled_from(["true", "false"]),
    "dateTime:RFC3339": times.flatmap(lambda ns: st.sampled_from(rfc3339_texts(ns))),
    "dateTime:RFC3339Nano": times.flatmap(lambda ns: st.sampled_from(rfc3339_texts(ns))),
}


@dataclass
class Column:
    label: str
    datatype: str
    group: bool
    default: str


@dataclass
class Table:
    columns: list[Column]
    # Each record's cells after result and table, under one or more table ids.
    records: list[list[str]]
    annotations: tuple[str, ...]


def _cell(datatype: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), CELLS[datatype])


@st.composite
def columns(draw: st.DrawFn) -> list[Column]:
    def column(label: str, datatypes: tuple[str, ...], group: bool | None = None) -> Column:
        datatype = draw(st.sampled_from(datatypes))
        return Column(
            label,
            datatype,
            draw(st.booleans()) if group is None else group,
            draw(st.one_of(st.just(""), CELLS[datatype])) if draw(st.booleans()) else "",
        )

    chosen = []
    if draw(st.booleans()):
        times_ = ("dateTime:RFC3339", "dateTime:RFC3339Nano")
        chosen += [column("_start", times_, True), column("_stop", times_, True)]
    if draw(st.booleans()):
        chosen.append(column("_time", ("dateTime:RFC3339", "dateTime:RFC3339Nano"), False))
    if draw(st.booleans()):
        chosen.append(column("_measurement", ("string",), True))
    labels = draw(
        st.lists(
            st.text(min_size=1, max_size=8).filter(lambda t: t not in _FLUX_META),
            max_size=5,
            unique=True,
        )
    )
    chosen += [column(label, DATATYPES) for label in labels]
    draw(st.randoms()).shuffle(chosen)
    return chosen


def _datatype_before_default(annotations: list[str]) -> bool:
    # influxdb-client drops a #default that comes before #datatype (it attaches defaults to
    # the columns #datatype creates); InfluxDB writes #datatype first. See the test below.
    return annotations.index("#datatype") < annotations.index("#default")


@st.composite
def tables(draw: st.DrawFn) -> Table:
    chosen = draw(columns())
    records = draw(
        st.lists(st.tuples(*(_cell(c.datatype) for c in chosen)).map(list), min_size=1, max_size=6)
    )
    annotations = draw(
        st.permutations(["#datatype", "#group", "#default"]).filter(_datatype_before_default)
        | st.permutations(["#datatype", "#group"])
    )
    return Table(chosen, records, tuple(annotations))


def encode(
    blocks: list[Table], results: list[str], *, newline: str, error: str | None = None
) -> bytes:
    """An annotated-CSV answer: one block per schema, a blank line between blocks."""

    def row(cells: list[str]) -> str:
        out = [
            '"' + cell.replace('"', '""') + '"'
            if any(c in cell for c in ',"\r\n') or cell.strip() != cell
            else cell
            for cell in cells
        ]
        return ",".join(out) + newline

    text = []
    table_id = 0
    for block, result in zip(blocks, results, strict=True):
        lines = {
            "#datatype": ["#datatype", "string", "long"] + [c.datatype for c in block.columns],
            "#group": ["#group", "false", "false"]
            + ["true" if c.group else "false" for c in block.columns],
            "#default": ["#default", "_result", ""] + [c.default for c in block.columns],
        }
        text += [row(lines[name]) for name in block.annotations]
        text.append(row(["", "result", "table"] + [c.label for c in block.columns]))
        for index, cells in enumerate(block.records):
            # Tables of one schema share a block, told apart by their table id.
            if index and index % 3 == 0:
                table_id += 1
            text.append(row(["", result, str(table_id), *cells]))
        table_id += 1
        text.append(newline)
    if error is not None:
        text += [
            row(["#datatype", "string", "string"]),
            row(["#group", "true", "true"]),
            row(["#default", "", ""]),
            row(["", "error", "reference"]),
            row(["", error, "897"]),
        ]
    return "".join(text).encode()


answers = st.lists(tables(), min_size=1, max_size=4).flatmap(
    lambda blocks: st.tuples(
        st.just(blocks),
        st.lists(
            st.sampled_from(["_result", "", "mean", "error", 'ünï,cö"de']),
            min_size=len(blocks),
            max_size=len(blocks),
        ),
        st.sampled_from(["\r\n", "\n"]),
        st.integers(1, 300),
    )
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answer=answers)
def test_generated_answers_parse_alike(answer: tuple[list[Table], list[str], str, int]) -> None:
    blocks, results, newline, chunk = answer
    body = encode(blocks, results, newline=newline)
    assert assert_parsed_alike(body, chunk=chunk) == sum(len(b.records) for b in blocks)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answer=answers, message=st.text(min_size=1, max_size=40))
def test_an_error_table_after_results_fails_in_both(
    answer: tuple[list[Table], list[str], str, int], message: str
) -> None:
    blocks, results, newline, chunk = answer
    body = encode(blocks, results, newline=newline, error=message)
    with pytest.raises(FluxQueryException) as theirs:
        parse_library(body)
    with pytest.raises(QueryFailed) as ours:
        parse_ours(body, typed=True, chunk=chunk)
    assert theirs.value.message == message
    assert theirs.value.reference == "897"
    assert str(ours.value) == f"{message} (reference 897)"


@settings(max_examples=300, deadline=None)
@given(time_ns=times, data=st.data())
def test_times_keep_every_nanosecond(time_ns: int, data: st.DataObject) -> None:
    assert parse_rfc3339_ns(data.draw(st.sampled_from(rfc3339_texts(time_ns)))) == time_ns


# --- Answers as InfluxDB writes them ---

# The error answer of a query that failed while running (HTTP 200), byte for byte as
# InfluxDB 2.x sends it (and as influxdb-client's own tests carry it).
SERVER_ERROR = (
    b"#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n"
    b",failed to create physical plan: invalid time bounds from procedure from: bounds "
    b"contain zero time,897\r\n\r\n"
)

# The example of the annotated-CSV reference: #group first, and a #default for result.
DOCUMENTED = (
    b"#group,false,false,true,true,false,false,true,true,true,true\r\n"
    b"#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,"
    b"string,string,string,string\r\n"
    b"#default,mean,,,,,,,,,\r\n"
    b",result,table,_start,_stop,_time,_value,_field,_measurement,host,region\r\n"
    b",,0,2022-12-31T05:41:24Z,2023-01-31T05:41:24.001Z,2023-01-01T00:52:00Z,15.43,mem,m,A,east\r\n"
    b",,1,2022-12-31T05:41:24Z,2023-01-31T05:41:24.001Z,2023-01-01T00:52:00Z,59.25,mem,m,B,east\r\n"
    b",,2,2022-12-31T05:41:24Z,2023-01-31T05:41:24.001Z,2023-01-01T00:52:00Z,52.62,mem,m,C,east\r\n"
    b"\r\n"
)


def test_a_query_that_failed_while_running_is_query_failed() -> None:
    with pytest.raises(FluxQueryException):
        parse_library(SERVER_ERROR)
    with pytest.raises(QueryFailed, match=r"bounds contain zero time \(reference 897\)"):
        parse_ours(SERVER_ERROR, typed=True)
    with pytest.raises(QueryFailed):
        parse_ours(SERVER_ERROR, typed=False)


def test_empty_cells_take_the_default_annotation() -> None:
    assert assert_parsed_alike(DOCUMENTED) == 3
    assert {row["result"] for row in parse_ours(DOCUMENTED, typed=True)} == {"mean"}


def test_a_default_before_the_datatype_still_applies() -> None:
    # The reference names no order for annotations (its own example starts with #group);
    # influxdb-client 1.24 reads this result as None, so only ours is checked here.
    body = (
        b"#group,false,false,false\r\n#default,mean,,7\r\n#datatype,string,long,long\r\n"
        b",result,table,_value\r\n,,0,\r\n\r\n"
    )
    assert parse_ours(body, typed=True) == [{"": "", "result": "mean", "table": "0", "_value": 7}]


def test_a_result_named_error_is_data_not_a_failure() -> None:
    body = (
        b"#datatype,string,long,string\r\n#group,false,false,false\r\n"
        b",result,table,_value\r\n,error,0,reference\r\n\r\n"
    )
    assert assert_parsed_alike(body) == 1


# --- The emulator's answers to our client's queries ---

T0 = 19_700 * 86_400 * 10**9
# A string field in line protocol: an escaped quote and backslash, commas, unicode.
HOSTILE = 'quote \\" back\\\\slash, comma = equals, 🌡️ °C'


async def test_the_emulators_answers_to_our_queries_parse_alike(
    v2_emulator: InfluxV2Emulator, database: str
) -> None:
    settings_ = ServerSettings(
        api_version=ApiVersion.V2,
        url=v2_emulator.url,
        database=database,
        token=V2_TOKEN,
        organization=V2_ORG,
    )
    async with aiohttp.ClientSession() as session:
        client = create_client(session, settings_)
        lines = [
            f"°C,domain=sensor,entity_id=küche value={20 + i}.5,count={i}i,ok={i % 2 == 0},"
            f'state="{HOSTILE}" {T0 + i * 3_600_000_000_007}'
            for i in range(30)
        ]
        lines += [f"%,domain=sensor,entity_id=hall value={i}.25 {T0 + i}" for i in range(5)]
        await client.write("\n".join(lines).encode())
        v2_emulator.answers.clear()
        assert sorted(await client.measurements()) == ["%", "°C"]
        await client.field_keys("°C")
        await client.tag_values("entity_id", "°C")
        assert [block async for block in client.read_series("°C", 0, T0 * 2)]
        assert [
            block async for block in client.read_series("°C", 0, T0 * 2, fields={"state", "ok"})
        ]
        for function in Aggregate:
            assert await client.aggregate(
                ["°C", "%"], "value", function, start_ns=0, end_ns=T0 * 2, group_by=["entity_id"]
            )
        assert await client.aggregate(
            "°C",
            "value",
            Aggregate.MEAN,
            start_ns=T0,
            end_ns=T0 + 86_400 * 10**9,
            every_ns=3_600 * 10**9,
        )
    assert len(v2_emulator.answers) == 5 + len(Aggregate) + 1
    for body in v2_emulator.answers:
        # In a thread: the parsers' reading runs on a loop of its own.
        assert await asyncio.to_thread(assert_parsed_alike, body, chunk=97) > 0
