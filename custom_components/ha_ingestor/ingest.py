"""Live recording: every state change from the event bus, in one or both layouts.

The event-bus callback runs for every state change in Home Assistant, so it only looks up
whether the entity is recorded and enqueues the state as it is (states are immutable). The
writers turn states into points and line protocol in the executor, and do everything that can
wait or fail (batching, retries, the spool).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import functools
import logging
from pathlib import Path
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.entityfilter import generate_filter
from homeassistant.util.dt import utc_from_timestamp

from .const import (
    CONF_ATTRIBUTE_ALLOWLIST,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_GLOBS,
    CONF_WRITE_MODE,
    DOMAIN,
    SECTION_INGESTION,
    SECTION_LEGACY,
    WriteMode,
)
from .influx import InfluxClient
from .legacy_layout import LegacyLayout, LegacyOptions
from .line_protocol import Point
from .optimized_layout import DEFAULT_ALLOWED_ATTRIBUTES, OptimizedLayout, OptimizedOptions
from .retry import RetryPolicy
from .spool import DeadLetterFile, Spool
from .writer import PointWriter, ToPoint, WriterStats

_LOGGER = logging.getLogger(__name__)

# Allow-list entries are "name" or "name:str" / "name:float"; a bare name keeps the type the
# default allow-list gives it, else float.
_TYPE_NAMES = {"str": "str", "string": "str", "float": "float", "number": "float"}

# After an outage the live data should flow again within seconds; a probe while the server is
# still down costs one failed request.
LIVE_RETRY = RetryPolicy(cool_down=5.0)
# Points per write. The event loop pays for each request (and each wake-up it takes), not for
# each point, so at usual rates the flush interval, not this, decides when a batch goes out:
# one request a second. 5,000 lines is InfluxDB's own recommended batch size.
LIVE_BATCH_SIZE = 5_000

# What the listener hands to the writers: the new state, when its event was fired (a POSIX
# timestamp; the datetime is made in the worker thread) and the entity's area at that moment
# (the registries are read on the loop only).
type StateChange = tuple[State, float, str | None]


def allowed_attributes(names: list[str] | None) -> dict[str, str]:
    """Allow-list option → attribute name to type name, as OptimizedOptions takes it."""
    if not names:
        return {name: kind.__name__ for name, kind in DEFAULT_ALLOWED_ATTRIBUTES.items()}
    allowed: dict[str, str] = {}
    for entry in names:
        name, _, type_name = entry.partition(":")
        name = name.strip()
        default = DEFAULT_ALLOWED_ATTRIBUTES.get(name, float).__name__
        allowed[name] = _TYPE_NAMES.get(type_name.strip().lower(), default)
    return allowed


def legacy_options(options: Mapping[str, Any]) -> LegacyOptions:
    """The legacy layout options of a config entry."""
    return LegacyOptions.from_options(options.get(SECTION_LEGACY, {}))


def optimized_options(options: Mapping[str, Any]) -> OptimizedOptions:
    """The optimized layout options of a config entry (global tags and ignores are shared)."""
    legacy = dict(options.get(SECTION_LEGACY, {}))
    ingestion = options.get(SECTION_INGESTION, {})
    legacy["allowed_attributes"] = allowed_attributes(ingestion.get(CONF_ATTRIBUTE_ALLOWLIST))
    return OptimizedOptions.from_options(legacy)


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
    problems: tuple[str, ...]


class Ingestion:
    """Owns the live writers of one config entry and the event-bus listener feeding them."""

    def __init__(
        self,
        hass: HomeAssistant,
        client: InfluxClient,
        options: Mapping[str, Any],
        storage_dir: Path,
        signal: str,
    ) -> None:
        self._hass = hass
        self._client = client
        self._storage_dir = storage_dir
        self._signal = signal
        ingestion = options.get(SECTION_INGESTION, {})
        self.mode = WriteMode(ingestion.get(CONF_WRITE_MODE, WriteMode.LEGACY))
        self.legacy_layout = LegacyLayout(legacy_options(options))
        self._area_of = area_lookup(hass)
        self.optimized_layout = OptimizedLayout(optimized_options(options), self._area_of)
        self._filter = generate_filter(
            ingestion.get(CONF_INCLUDE_DOMAINS, []),
            ingestion.get(CONF_INCLUDE_ENTITIES, []),
            ingestion.get(CONF_EXCLUDE_DOMAINS, []),
            ingestion.get(CONF_EXCLUDE_ENTITIES, []),
            ingestion.get(CONF_INCLUDE_GLOBS, []),
            ingestion.get(CONF_EXCLUDE_GLOBS, []),
        )
        # Entity id → whether its state changes are recorded, and its area; forgotten when the
        # registries change.
        self._entities: dict[str, tuple[bool, str | None]] = {}
        self.dead_letters = DeadLetterFile(storage_dir / "dead_letter.jsonl")
        self._writers: dict[str, PointWriter[StateChange]] = {}
        self._legacy: PointWriter[StateChange] | None = None
        self._optimized: PointWriter[StateChange] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._entity_registry = er.async_get(hass)

    @property
    def writers(self) -> dict[str, PointWriter[StateChange]]:
        """Running writers, keyed "layout:database"."""
        return dict(self._writers)

    async def async_start(self) -> None:
        """Start the writers the write mode asks for and listen to state changes."""
        database = self._client.database
        if self.mode in (WriteMode.LEGACY, WriteMode.BOTH):
            self._legacy = self._writer(database, "legacy")
        if self.mode in (WriteMode.OPTIMIZED, WriteMode.BOTH):
            self._optimized = self._writer(database, "optimized")
        bus = self._hass.bus
        self._unsubscribe = [
            bus.async_listen(er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_entity_updated),
            bus.async_listen(dr.EVENT_DEVICE_REGISTRY_UPDATED, self._async_device_updated),
            bus.async_listen(ar.EVENT_AREA_REGISTRY_UPDATED, self._async_area_updated),
            bus.async_listen(EVENT_STATE_CHANGED, self._async_state_changed),
        ]

    async def async_stop(self) -> None:
        """Stop listening, then flush every writer (what can't be sent is spooled)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        writers = list(self._writers.values())
        self._writers.clear()
        self._legacy = self._optimized = None
        for writer in writers:
            await writer.stop(flush=True)

    async def async_set_layouts(
        self, *, legacy: bool, optimized: bool, optimized_database: str | None = None
    ) -> None:
        """Switch layouts on or off at run time (dual-write, switchover, rollback)."""
        database = self._client.database
        target = optimized_database or database
        if legacy and self._legacy is None:
            self._legacy = self._writer(database, "legacy")
        elif not legacy and self._legacy is not None:
            writer, self._legacy = self._legacy, None
            await self._retire(writer)
        previous = self._optimized
        if previous is not None and optimized and previous.database == target:
            return
        # Start the new writer before retiring the old one, so no event falls in between.
        self._optimized = self._writer(target, "optimized") if optimized else None
        if previous is not None:
            await self._retire(previous)

    @property
    def writes_legacy(self) -> bool:
        """Whether state changes are being written in the legacy layout."""
        return self._legacy is not None

    @property
    def optimized_database(self) -> str | None:
        """Where optimized points go, or None when the optimized layout is off."""
        return self._optimized.database if self._optimized else None

    @property
    def stats(self) -> IngestStats:
        """All writers' figures combined."""
        stats = [writer.stats for writer in self._writers.values()]
        return IngestStats(
            connected=all(s.connected for s in stats),
            queue_depth=sum(s.queue_depth for s in stats),
            spooled_points=sum(s.spooled_points for s in stats),
            dead_letter_count=self.dead_letters.count,
            points_written=sum(s.points_written for s in stats),
            points_dropped=sum(s.points_dropped for s in stats),
            last_error=next((s.last_error for s in stats if s.last_error), None),
            spool_error=next((s.spool_error for s in stats if s.spool_error), None),
            problems=tuple(sorted({s.problem.value for s in stats if s.problem})),
        )

    def _writer(self, database: str, layout: str) -> PointWriter[StateChange]:
        key = f"{layout}:{database}"
        to_point = (
            legacy_converter(self.legacy_layout)
            if layout == "legacy"
            else optimized_converter(self.optimized_layout.options)
        )
        writer = PointWriter(
            functools.partial(self._client.write, database=database),
            Spool(self._storage_dir / f"spool-{layout}-{_safe(database)}"),
            self.dead_letters,
            database=database,
            batch_size=LIVE_BATCH_SIZE,
            retry=LIVE_RETRY,
            on_change=self._stats_changed,
            to_point=to_point,
        )
        self._writers[key] = writer
        writer.start()
        return writer

    async def _retire(self, writer: PointWriter[StateChange]) -> None:
        for key, running in list(self._writers.items()):
            if running is writer:
                del self._writers[key]
        await writer.stop(flush=True)
        self._stats_changed(writer.stats)

    @callback
    def _stats_changed(self, _stats: WriterStats) -> None:
        async_dispatcher_send(self._hass, self._signal)

    @callback
    def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        # Every state change in Home Assistant comes through here: a dict lookup and a queue
        # append, nothing more; the writers convert and encode in the executor.
        state = event.data["new_state"]
        if state is None:
            return
        entity = self._entities.get(state.entity_id)
        if entity is None:
            entity = self._entities[state.entity_id] = self._look_up(state.entity_id)
        recorded, area = entity
        if not recorded:
            return
        change = (state, event.time_fired_timestamp, area)
        if self._legacy is not None:
            self._legacy.enqueue(change)
        if self._optimized is not None:
            self._optimized.enqueue(change)

    def _look_up(self, entity_id: str) -> tuple[bool, str | None]:
        """Whether an entity's state changes are recorded, and its area."""
        if not self._filter(entity_id):
            return False, None
        # Our own sensors change whenever points are written; recording them would feed back.
        registered = self._entity_registry.async_get(entity_id)
        if registered is not None and registered.platform == DOMAIN:
            return False, None
        return True, self._area_of(entity_id)

    @callback
    def _async_entity_updated(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        data = event.data
        self._entities.pop(data["entity_id"], None)
        if data["action"] == "update" and "old_entity_id" in data:
            self._entities.pop(data["old_entity_id"], None)

    @callback
    def _async_device_updated(self, event: Event[dr.EventDeviceRegistryUpdatedData]) -> None:
        data = event.data
        if data["action"] == "update" and "area_id" in data["changes"]:
            self._entities.clear()  # the areas of its entities may have changed

    @callback
    def _async_area_updated(self, _event: Event[ar.EventAreaRegistryUpdatedData]) -> None:
        self._entities.clear()  # an area was renamed or removed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"
