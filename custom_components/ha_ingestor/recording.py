"""Live recording: every state change from the event bus, in one or both layouts.

The event-bus callback runs for every state change in Home Assistant, so it only looks up
whether the entity is recorded and enqueues the state as it is (states are immutable). The
writers turn states into points and line protocol in the executor, and do everything that can
wait or fail (batching, retries, the spool).
"""

import asyncio
from collections.abc import Callable, Iterable, Mapping
import contextlib
from dataclasses import dataclass
import functools
import hashlib
import json
import logging
from pathlib import Path

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.helpers.entityfilter import generate_filter
from homeassistant.util.dt import utc_from_timestamp

from .const import DOMAIN, WriteMode
from .engine.influx import InfluxClient
from .engine.line_protocol import Point, encode
from .engine.migration.ledger import Layout, Recording
from .engine.retry import RetryPolicy
from .engine.rollups import ROLLUP_INTERVAL, RollupJob
from .engine.spool import DeadLetterFile, Spool
from .engine.writer import PointWriter, ServerProblem, ToPoint, WriteFunction, WriterStats
from .layouts.legacy import LegacyLayout, core_encoder
from .layouts.optimized import OptimizedLayout, OptimizedOptions
from .options import EntityFilter, EntryOptions

_LOGGER = logging.getLogger(__name__)

# After an outage the live data should flow again within seconds; a probe while the server is
# still down costs one failed request.
LIVE_RETRY = RetryPolicy(cool_down=5.0)
# Points per write. The event loop pays for each request (and each wake-up it takes), not for
# each point, so at usual rates the flush interval, not this, decides when a batch goes out:
# one request a second. 5,000 lines is InfluxDB's own recommended batch size.
LIVE_BATCH_SIZE = 5_000
# The last rollup run at shutdown gives up after this long (the spool keeps the points; the
# windows of what was written are recomputed when more points fall into them).
_ROLLUP_STOP_SECONDS = 10.0

# What the listener hands to the writers: the new state, when its event was fired (a POSIX
# timestamp; the datetime is made in the worker thread) and the entity's area at that moment
# (the registries are read on the loop only).
type StateChange = tuple[State, float, str | None]


def area_lookup(hass: HomeAssistant) -> Callable[[str], str | None]:
    """Entity id → area name, from the entity's own area or its device's."""
    entities = er.async_get(hass)
    devices = dr.async_get(hass)
    areas = ar.async_get(hass)

    def area_of(entity_id: str) -> str | None:
        entry = entities.async_get(entity_id)
        if entry is None:
            return None
        area_id = entry.area_id
        if area_id is None and entry.device_id and (device := devices.async_get(entry.device_id)):
            area_id = device.area_id
        area = areas.async_get_area(area_id) if area_id else None
        return area.name if area else None

    return area_of


def legacy_converter(layout: LegacyLayout) -> ToPoint[StateChange]:
    """The legacy layout as a writer's converter of state changes."""

    def to_point(change: StateChange) -> Point | None:
        state, fired, _area = change
        return layout.point(state, utc_from_timestamp(fired))

    return to_point


def optimized_converter(options: OptimizedOptions) -> ToPoint[StateChange]:
    """The optimized layout as a writer's converter, with the area each state change carries."""
    # The area is an input of the layout, so there is one layout per area (a handful).
    layouts: dict[str | None, OptimizedLayout] = {}

    def to_point(change: StateChange) -> Point | None:
        state, fired, area = change
        if (layout := layouts.get(area)) is None:
            layout = layouts[area] = OptimizedLayout(options, lambda _entity_id: area)
        return layout.point(state, utc_from_timestamp(fired))

    return to_point


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStats:
    """The writers' figures added up, for the ingest entities."""

    connected: bool
    queue_depth: int
    spooled_points: int
    dead_letter_count: int
    points_written: int
    points_dropped: int
    last_error: str | None
    spool_error: str | None
    # What keeps some writer from delivering (a damaged spool is in damaged_points).
    problems: tuple[ServerProblem, ...]
    # Databases some writer finds missing (a repair issue names them).
    missing_databases: tuple[str, ...] = ()
    # Points of damaged spool segments moved aside unreplayed.
    damaged_points: int = 0

    @classmethod
    def combine(
        cls,
        stats: Mapping[Recording, WriterStats],
        *,
        dead_letter_count: int,
        written_by_finished: int,
    ) -> "IngestStats":
        """The figures of these writers added up (``written_by_finished``: points of writers
        that have finished, kept in the total)."""
        values = stats.values()
        return cls(
            connected=all(s.connected for s in values),
            queue_depth=sum(s.queue_depth for s in values),
            spooled_points=sum(s.spooled_points for s in values),
            dead_letter_count=dead_letter_count,
            points_written=written_by_finished + sum(s.points_written for s in values),
            points_dropped=sum(s.points_dropped for s in values),
            last_error=next((s.last_error for s in values if s.last_error), None),
            spool_error=next((s.spool_error for s in values if s.spool_error), None),
            problems=tuple(sorted({s.problem for s in values if s.problem})),
            missing_databases=tuple(
                sorted(
                    {
                        recording.database
                        for recording, s in stats.items()
                        if s.problem is ServerProblem.DATABASE_NOT_FOUND
                    }
                )
            ),
            damaged_points=sum(s.damaged_points for s in values),
        )


SPOOL_PREFIX = "spool-"
# Written into every spool directory: which layout and database its points are for, so a
# spool left behind (after a switchover, a reconfiguration, a crash) is replayed into the
# right place.
SPOOL_TARGET_FILE = "target.json"


def spool_directory_name(recording: Recording) -> str:
    """The spool directory of one recording (readable, and unambiguous for odd names)."""
    safe = _safe(recording.database)
    if safe != recording.database:
        digest = hashlib.blake2b(recording.database.encode(), digest_size=4).hexdigest()
        safe = f"{safe}-{digest}"
    return f"{SPOOL_PREFIX}{recording.layout}-{safe}"


def _state_change_time(change: StateChange) -> int:
    # Microseconds, as the layouts' datetime keeps them.
    return int(change[1] * 1_000_000) * 1000


class RecordedEntities:
    """Which entities are recorded, and their areas: looked up once, forgotten when the
    entity, device or area registries change."""

    def __init__(self, hass: HomeAssistant, entity_filter: EntityFilter) -> None:
        """Filter as HA's include / exclude lists do; our own entities are never recorded."""
        self.area_of = area_lookup(hass)
        self._filter = generate_filter(
            list(entity_filter.include_domains),
            list(entity_filter.include_entities),
            list(entity_filter.exclude_domains),
            list(entity_filter.exclude_entities),
            list(entity_filter.include_globs),
            list(entity_filter.exclude_globs),
        )
        self._registry = er.async_get(hass)
        # Entity id → whether its state changes are recorded, and its area. The event-bus
        # listener reads it directly: a dict lookup per state change.
        self.known: dict[str, tuple[bool, str | None]] = {}

    def look_up(self, entity_id: str) -> tuple[bool, str | None]:
        """Whether an entity's state changes are recorded, and its area (remembered)."""
        found = self.known[entity_id] = self._look_up(entity_id)
        return found

    def _look_up(self, entity_id: str) -> tuple[bool, str | None]:
        if not self._filter(entity_id):
            return False, None
        # Our own sensors change whenever points are written; recording them would feed back.
        registered = self._registry.async_get(entity_id)
        if registered is not None and registered.platform == DOMAIN:
            return False, None
        return True, self.area_of(entity_id)

    def async_listen(self, hass: HomeAssistant) -> list[Callable[[], None]]:
        """Forget what a registry change may have changed; the unsubscribe callables."""
        bus = hass.bus
        return [
            bus.async_listen(er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_entity_updated),
            bus.async_listen(dr.EVENT_DEVICE_REGISTRY_UPDATED, self._async_device_updated),
            bus.async_listen(ar.EVENT_AREA_REGISTRY_UPDATED, self._async_area_updated),
        ]

    @callback
    def _async_entity_updated(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        data = event.data
        self.known.pop(data["entity_id"], None)
        if data["action"] == "update" and "old_entity_id" in data:
            self.known.pop(data["old_entity_id"], None)

    @callback
    def _async_device_updated(self, event: Event[dr.EventDeviceRegistryUpdatedData]) -> None:
        data = event.data
        if data["action"] == "update" and "area_id" in data["changes"]:
            self.known.clear()  # the areas of its entities may have changed

    @callback
    def _async_area_updated(self, _event: Event[ar.EventAreaRegistryUpdatedData]) -> None:
        self.known.clear()  # an area was renamed or removed


class Ingestion:
    """Owns the live writers of one config entry and the event-bus listener feeding them.

    Each writer records one layout into one database (a :class:`Recording`). A writer that is
    no longer wanted is retired, not stopped: it takes no new points and keeps delivering
    what it holds, its spool included, until it is empty. Spools left on disk by earlier runs
    are found at start and replayed the same way, whatever database they are for.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        client: InfluxClient,
        options: EntryOptions,
        storage_dir: Path,
        on_change: Callable[[], None],
    ) -> None:
        """``on_change`` is called (on the loop) whenever the figures of :attr:`stats` change."""
        self._hass = hass
        self._client = client
        self._storage_dir = storage_dir
        self._on_change = on_change
        self.mode = options.write_mode
        self._optimized_database = options.optimized_database or client.database
        self.legacy_layout = LegacyLayout(options.legacy)
        self._entities = RecordedEntities(hass, options.entity_filter)
        self.optimized_layout = OptimizedLayout(options.optimized, self._entities.area_of)
        self.dead_letters = DeadLetterFile(storage_dir / "dead_letter.jsonl")
        self._active: dict[Recording, PointWriter[StateChange]] = {}
        self._retired: dict[Recording, PointWriter[StateChange]] = {}
        # The active writers, for the listener (a tuple is the cheapest to walk).
        self._targets: tuple[PointWriter[StateChange], ...] = ()
        self._watchers: set[asyncio.Task[None]] = set()
        # Points written by writers that have finished since the start (kept in the total).
        self._written_by_finished = 0
        self._unsubscribe: list[Callable[[], None]] = []
        # Off by default: with it, every body an optimized writer delivers marks its windows.
        self.rollups = RollupJob(client, interval=ROLLUP_INTERVAL) if options.rollups else None
        self._rollup_task: asyncio.Task[None] | None = None
        # What writers made now know of the server (False while setup's check found it down).
        self._starting_reachable = True

    def use_recording_options(self, options: EntryOptions) -> None:
        """Take the write mode and optimized database of changed options (no restart)."""
        self.mode = options.write_mode
        self._optimized_database = options.optimized_database or self._client.database

    @property
    def configured_recordings(self) -> frozenset[Recording]:
        """What the options ask to record when no migration says otherwise."""
        wanted = set()
        if self.mode in (WriteMode.LEGACY, WriteMode.BOTH):
            wanted.add(Recording(Layout.LEGACY, self._client.database))
        if self.mode in (WriteMode.OPTIMIZED, WriteMode.BOTH):
            wanted.add(Recording(Layout.OPTIMIZED, self._optimized_database))
        return frozenset(wanted)

    @property
    def recordings(self) -> frozenset[Recording]:
        """What is being recorded now."""
        return frozenset(self._active)

    @property
    def writers(self) -> dict[str, PointWriter[StateChange]]:
        """Every writer, keyed "layout:database" (retired ones marked so)."""
        found = {f"{r.layout}:{r.database}": w for r, w in sorted(self._active.items())}
        found |= {f"{r.layout}:{r.database} (retired)": w for r, w in sorted(self._retired.items())}
        return found

    async def async_start(
        self, recordings: Iterable[Recording] | None = None, *, reachable: bool = True
    ) -> None:
        """Start the writers (the configured ones unless told) and listen to state changes.

        Spools on disk that none of them owns get a retired writer that replays them.
        ``reachable=False`` (setup found the server down) starts them disconnected.
        """
        wanted = self.configured_recordings if recordings is None else frozenset(recordings)
        self._starting_reachable = reachable
        try:
            await self.async_set_recordings(wanted)
            for recording in await self._async_leftover_spools():
                if recording not in self._active and recording not in self._retired:
                    writer = await self._writer(recording)
                    self._retire(recording, writer)
        finally:
            self._starting_reachable = True
        if self.rollups is not None:
            self._rollup_task = self._hass.async_create_background_task(
                self.rollups.run(), f"{DOMAIN} rollups"
            )
        self._unsubscribe = [
            *self._entities.async_listen(self._hass),
            self._hass.bus.async_listen(EVENT_STATE_CHANGED, self._async_state_changed),
        ]

    async def async_stop(self) -> None:
        """Stop listening, then flush every writer (what can't be sent is spooled)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for watcher in self._watchers:
            watcher.cancel()
        self._watchers.clear()
        writers = [*self._active.values(), *self._retired.values()]
        self._active.clear()
        self._retired.clear()
        self._targets = ()
        for writer in writers:
            await writer.stop(flush=True)
        if self._rollup_task is not None:
            self._rollup_task.cancel()
            self._rollup_task = None
        if self.rollups is not None and self.rollups.pending:
            # What the writers delivered last gets its rollups now, not after a restart.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ROLLUP_STOP_SECONDS):
                    await self.rollups.run_once()

    async def async_set_recordings(self, wanted: Iterable[Recording]) -> None:
        """Record exactly these layouts and databases from now on (dual-write, switchover,
        rollback): new writers start before unwanted ones retire, so no event falls between."""
        wanted = frozenset(wanted)
        for recording in sorted(wanted - self._active.keys()):
            retired = self._retired.pop(recording, None)
            if retired is not None and retired.reactivate():
                self._active[recording] = retired
            else:
                self._active[recording] = await self._writer(recording)
        self._targets = tuple(self._active[r] for r in sorted(wanted))
        for recording in sorted(self._active.keys() - wanted):
            self._retire(recording, self._active.pop(recording))
        self._stats_changed(None)

    def holds_before(self, recording: Recording, before_ns: int) -> bool:
        """Whether a writer of ``recording`` holds a point older than ``before_ns``."""
        return any(
            writer.holds_before(before_ns)
            for found in (self._active, self._retired)
            if (writer := found.get(recording)) is not None
        )

    async def async_flushed(self, recording: Recording, before_ns: int) -> None:
        """Return once no writer of ``recording`` holds a point older than ``before_ns``.

        While InfluxDB is down this waits: what the writers hold is not in the database yet.
        """
        writers = [
            writer
            for found in (self._active, self._retired)
            if (writer := found.get(recording)) is not None
        ]
        await asyncio.gather(*(writer.flushed(before_ns) for writer in writers))

    async def async_drained(self, recording: Recording, within: float) -> bool:
        """Wait up to ``within`` s for a retired writer to deliver all it held; whether it did."""
        writer = self._retired.get(recording)
        if writer is None:
            return True
        try:
            async with asyncio.timeout(within):
                await writer.wait_finished()
        except TimeoutError:
            return False
        return True

    async def async_discard(self, database: str) -> int:
        """Throw away what retired writers hold for a database that is gone; how many points."""
        discarded = 0
        for recording in [r for r in self._retired if r.database == database]:
            writer = self._retired.pop(recording)
            discarded += await writer.discard()
            self._written_by_finished += writer.stats.points_written
        self._stats_changed(None)
        return discarded

    @property
    def stats(self) -> IngestStats:
        """All writers' figures combined, retired ones included."""
        everyone = {**self._retired, **self._active}
        return IngestStats.combine(
            {recording: writer.stats for recording, writer in everyone.items()},
            dead_letter_count=self.dead_letters.count,
            written_by_finished=self._written_by_finished,
        )

    async def _writer(self, recording: Recording) -> PointWriter[StateChange]:
        if recording.layout is Layout.LEGACY:
            to_point = legacy_converter(self.legacy_layout)
            to_line = core_encoder(self._client.settings.api_version)
        else:
            to_point = optimized_converter(self.optimized_layout.options)
            to_line = encode
        write: WriteFunction = functools.partial(self._client.write, database=recording.database)
        if recording.layout is Layout.OPTIMIZED and (rollups := self.rollups) is not None:
            database = recording.database

            async def write_and_mark(body: bytes) -> None:
                await self._client.write(body, database=database)
                rollups.written(database, body)

            write = write_and_mark
        directory = self._storage_dir / spool_directory_name(recording)
        await self._hass.async_add_executor_job(_claim_spool, directory, recording)
        writer = PointWriter(
            write,
            Spool(directory),
            self.dead_letters,
            database=recording.database,
            batch_size=LIVE_BATCH_SIZE,
            retry=LIVE_RETRY,
            on_change=self._stats_changed,
            to_point=to_point,
            time_of=_state_change_time,
            to_line=to_line,
            reachable=self._starting_reachable,
        )
        writer.start()
        return writer

    def _retire(self, recording: Recording, writer: PointWriter[StateChange]) -> None:
        """Let a writer deliver what it holds, then forget it."""
        writer.retire()
        self._retired[recording] = writer

        async def forget_when_done() -> None:
            await writer.wait_finished()
            if self._retired.get(recording) is writer:
                del self._retired[recording]
                self._written_by_finished += writer.stats.points_written
                self._stats_changed(None)

        watcher = self._hass.async_create_background_task(
            forget_when_done(), f"{DOMAIN} retired writer {recording.layout}:{recording.database}"
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _async_leftover_spools(self) -> list[Recording]:
        """Recordings of the spool directories on disk that still hold points."""
        known = {self._client.database, self._optimized_database}
        return await self._hass.async_add_executor_job(_leftover_spools, self._storage_dir, known)

    @callback
    def _stats_changed(self, _stats: WriterStats | None) -> None:
        self._on_change()

    @callback
    def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        # Every state change in Home Assistant comes through here: a dict lookup and a queue
        # append, nothing more; the writers convert and encode in the executor.
        state = event.data["new_state"]
        if state is None:
            return
        entity = self._entities.known.get(state.entity_id)
        if entity is None:
            entity = self._entities.look_up(state.entity_id)
        recorded, area = entity
        if not recorded:
            return
        change = (state, event.time_fired_timestamp, area)
        for writer in self._targets:
            writer.enqueue(change)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"


def _claim_spool(directory: Path, recording: Recording) -> None:
    """Create a spool directory that says what it is for (runs in the executor).

    A directory that cannot be made is the spool's to report when it is used.
    """
    marker = directory / SPOOL_TARGET_FILE
    content = json.dumps(recording.as_dict())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not marker.exists() or marker.read_text(encoding="utf-8") != content:
            marker.write_text(content, encoding="utf-8")
    except OSError as err:
        _LOGGER.debug("Cannot mark spool directory %s: %s", directory, err)


def _leftover_spools(storage_dir: Path, known_databases: set[str]) -> list[Recording]:
    """The recordings of spool directories holding segments (runs in the executor).

    A directory of an earlier version has no target file; its name gives the layout and,
    matched against the databases the entry knows, the database.
    """
    found: list[Recording] = []
    if not storage_dir.is_dir():
        return found
    for directory in sorted(storage_dir.glob(f"{SPOOL_PREFIX}*")):
        if not directory.is_dir() or not any(directory.glob("*.lp")):
            continue
        recording = _spool_recording(directory, known_databases)
        if recording is None:
            _LOGGER.warning("Spool folder %s is not one of ours; it is left alone", directory)
            continue
        expected = storage_dir / spool_directory_name(recording)
        if expected != directory:
            # A folder named the way an earlier version named it.
            if expected.exists():
                _LOGGER.warning(
                    "Spool folder %s holds points for %s, and so does %s; replay it by moving "
                    "its .lp files there",
                    directory,
                    recording.database,
                    expected,
                )
                continue
            directory.rename(expected)
        found.append(recording)
    return found


def _spool_recording(directory: Path, known_databases: set[str]) -> Recording | None:
    marker = directory / SPOOL_TARGET_FILE
    try:
        return Recording.from_dict(json.loads(marker.read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, KeyError) as err:
        _LOGGER.warning("Cannot read %s (%s); guessing from the folder name", marker, err)
    layout_name, _, rest = directory.name.removeprefix(SPOOL_PREFIX).partition("-")
    try:
        layout = Layout(layout_name)
    except ValueError:
        return None
    for database in sorted(known_databases):
        recording = Recording(layout, database)
        if directory.name in (
            spool_directory_name(recording),
            f"{SPOOL_PREFIX}{layout}-{_safe(database)}",
        ):
            return recording
    return Recording(layout, rest) if rest else None
