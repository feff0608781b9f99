"""Realistic Home Assistant test data: state changes of a simulated home, generated lazily.

Pure and deterministic: the same configuration (seed included) always yields the same events,
in time order, one at a time, so millions of them can be streamed into InfluxDB in constant
memory to rehearse a migration or benchmark it.
"""

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum, auto
import heapq
import random
from types import MappingProxyType
from typing import Any

MAX_EVENTS = 5_000_000
MAX_ENTITIES = 20_000
DEFAULT_ENTITY_COUNT = 300
# High-cardinality mode always adds at least this many dynamic sensors to the home.
HIGH_CARDINALITY_MIN_DYNAMIC = 1_000
# Two events of one entity are at least this far apart. InfluxDB keeps one point per series and
# timestamp, so a shared timestamp would silently lose an event, also for writers that round
# to milliseconds.
MIN_ENTITY_GAP = timedelta(milliseconds=1)
# Share of events that report the entity as unavailable or unknown, as flaky devices do.
UNAVAILABLE_SHARE = 0.01

_MIN_GAP_US = MIN_ENTITY_GAP // timedelta(microseconds=1)
_MICROSECOND = timedelta(microseconds=1)
# Periodic reporters drift by up to ±2 % of their interval.
_PERIODIC_JITTER = 0.04
# Burst pattern: this share of the events happens in this share of the time.
_BURST_TIME_SHARE = 0.05
_BURST_EVENT_SHARE = 0.85


class Pattern(StrEnum):
    """How the events are spread over time."""

    HIGH_FREQUENCY = "high_frequency"
    PERIODIC = "periodic"
    BURST = "burst"
    SPARSE = "sparse"
    MIXED = "mixed"


class EntityKind(StrEnum):
    """What a simulated entity is; decides its domain, attributes and behaviour."""

    LIGHT = "light"
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    POWER = "power"
    ENERGY = "energy"
    ILLUMINANCE = "illuminance"
    GAS = "gas"
    BATTERY = "battery"
    PRESSURE = "pressure"
    DOOR = "door"
    MOTION = "motion"
    WINDOW = "window"
    CLIMATE = "climate"
    AUTOMATION = "automation"
    SCRIPT = "script"
    DEVICE_TRACKER = "device_tracker"
    DYNAMIC = "dynamic"


class _Timing(Enum):
    """When one entity's events happen within the period."""

    EVEN = auto()  # one event in each equal slice of the period, anywhere in it
    PERIODIC = auto()  # a fixed interval with a little jitter
    POISSON = auto()  # independent events: exponential gaps
    BURST = auto()  # independent events, crowded into the shared bursts


@dataclass(frozen=True, slots=True)
class _KindProfile:
    domain: str
    default_count: int  # how many the default home has
    weight: int  # relative update rate in a real home
    mixed_timing: _Timing


_PROFILES: Mapping[EntityKind, _KindProfile] = MappingProxyType(
    {
        EntityKind.LIGHT: _KindProfile("light", 60, 4, _Timing.BURST),
        EntityKind.TEMPERATURE: _KindProfile("sensor", 30, 12, _Timing.PERIODIC),
        EntityKind.HUMIDITY: _KindProfile("sensor", 15, 6, _Timing.PERIODIC),
        EntityKind.POWER: _KindProfile("sensor", 25, 30, _Timing.EVEN),
        EntityKind.ENERGY: _KindProfile("sensor", 20, 12, _Timing.PERIODIC),
        EntityKind.ILLUMINANCE: _KindProfile("sensor", 10, 12, _Timing.PERIODIC),
        EntityKind.GAS: _KindProfile("sensor", 5, 4, _Timing.PERIODIC),
        EntityKind.BATTERY: _KindProfile("sensor", 15, 1, _Timing.POISSON),
        EntityKind.PRESSURE: _KindProfile("sensor", 10, 4, _Timing.PERIODIC),
        EntityKind.DOOR: _KindProfile("binary_sensor", 15, 3, _Timing.POISSON),
        EntityKind.MOTION: _KindProfile("binary_sensor", 20, 8, _Timing.BURST),
        EntityKind.WINDOW: _KindProfile("binary_sensor", 15, 2, _Timing.POISSON),
        EntityKind.CLIMATE: _KindProfile("climate", 10, 6, _Timing.PERIODIC),
        EntityKind.AUTOMATION: _KindProfile("automation", 25, 2, _Timing.POISSON),
        EntityKind.SCRIPT: _KindProfile("script", 10, 1, _Timing.POISSON),
        EntityKind.DEVICE_TRACKER: _KindProfile("device_tracker", 15, 3, _Timing.POISSON),
        EntityKind.DYNAMIC: _KindProfile("sensor", 0, 6, _Timing.PERIODIC),
    }
)
_REALISTIC_KINDS = tuple(kind for kind in EntityKind if kind is not EntityKind.DYNAMIC)

_PATTERN_TIMING: Mapping[Pattern, _Timing] = MappingProxyType(
    {
        Pattern.HIGH_FREQUENCY: _Timing.EVEN,
        Pattern.PERIODIC: _Timing.PERIODIC,
        Pattern.BURST: _Timing.BURST,
        Pattern.SPARSE: _Timing.POISSON,
    }
)


def _timing(kind: EntityKind, pattern: Pattern) -> _Timing:
    if pattern is Pattern.MIXED:
        return _PROFILES[kind].mixed_timing
    return _PATTERN_TIMING[pattern]


def _weight(kind: EntityKind, pattern: Pattern) -> int:
    # High frequency keeps every entity equally busy, so the whole period is evenly dense.
    return 1 if pattern is Pattern.HIGH_FREQUENCY else _PROFILES[kind].weight


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Invalid values raise ``ValueError`` on construction.

    ``entity_count`` ``None`` means the default home (300 entities, 1,300 in high-cardinality
    mode); a number scales the home to that many entities. Events are spread over
    ``start``..``end`` (both timezone-aware); a zero-length period is fine as long as no
    entity needs two events.
    """

    count: int
    pattern: Pattern
    entity_count: int | None
    start: datetime
    end: datetime
    seed: int
    high_cardinality: bool = False

    def __post_init__(self) -> None:
        """Normalise the pattern and reject configurations that cannot be generated."""
        try:
            object.__setattr__(self, "pattern", Pattern(self.pattern))
        except ValueError:
            choices = ", ".join(Pattern)
            raise ValueError(
                f"unknown pattern {self.pattern!r}; expected one of {choices}"
            ) from None
        if not 0 < self.count <= MAX_EVENTS:
            raise ValueError(f"count must be between 1 and {MAX_EVENTS:,}, got {self.count:,}")
        if self.entity_count is not None and not 0 < self.entity_count <= MAX_ENTITIES:
            raise ValueError(
                f"entity_count must be between 1 and {MAX_ENTITIES:,}, got {self.entity_count:,}"
            )
        if self.high_cardinality and self.total_entities < HIGH_CARDINALITY_MIN_DYNAMIC:
            raise ValueError(
                f"high-cardinality mode needs at least {HIGH_CARDINALITY_MIN_DYNAMIC:,} "
                f"entities, got entity_count {self.total_entities:,}"
            )
        for name, moment in (("start", self.start), ("end", self.end)):
            if moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
        if self.end < self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})"
            )
        busiest = self.busiest_entity_events
        needed = MIN_ENTITY_GAP * (busiest - 1)
        if self.end - self.start < needed:
            raise ValueError(
                f"the period {self.start.isoformat()} .. {self.end.isoformat()} is too short "
                f"for {self.count:,} events: one entity gets {busiest:,} events, at least "
                f"{MIN_ENTITY_GAP.total_seconds() * 1000:g} ms apart, which needs {needed}; "
                "lengthen the period or lower count"
            )

    @property
    def total_entities(self) -> int:
        """How many entities the simulated home has."""
        if self.entity_count is not None:
            return self.entity_count
        if self.high_cardinality:
            return DEFAULT_ENTITY_COUNT + HIGH_CARDINALITY_MIN_DYNAMIC
        return DEFAULT_ENTITY_COUNT

    @property
    def busiest_entity_events(self) -> int:
        """The most events any one entity gets (the allocation never exceeds this)."""
        counts = _kind_counts(self.total_entities, high_cardinality=self.high_cardinality)
        weights = {kind: _weight(kind, self.pattern) for kind in counts}
        total = sum(counts[kind] * weights[kind] for kind in counts)
        heaviest = max(weights[kind] for kind in counts if counts[kind])
        return -(-self.count * heaviest // total)


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One simulated entity and the attributes that never change."""

    entity_id: str
    kind: EntityKind
    attributes: Mapping[str, Any]

    @property
    def domain(self) -> str:
        """The entity's domain, such as ``sensor``."""
        return self.entity_id.partition(".")[0]


@dataclass(frozen=True, slots=True)
class GeneratedState:
    """One state change, as Home Assistant would fire it at ``time_fired`` (UTC)."""

    entity_id: str
    state: str
    attributes: Mapping[str, Any]
    time_fired: datetime


# --- The simulated home -------------------------------------------------------------------

_ROOMS = (
    "living_room",
    "kitchen",
    "bedroom",
    "office",
    "bathroom",
    "hallway",
    "dining_room",
    "guest_room",
    "kids_room",
    "basement",
    "garage",
    "attic",
    "laundry",
    "porch",
    "garden",
)
_FIXTURES = ("ceiling", "lamp", "spots", "led_strip", "pendant", "wall", "desk_lamp", "floor_lamp")
_APPLIANCES = (
    "washing_machine",
    "dryer",
    "dishwasher",
    "fridge",
    "freezer",
    "oven",
    "tv",
    "computer",
    "heat_pump",
    "ev_charger",
    "boiler",
    "network_rack",
    "coffee_maker",
    "microwave",
    "solar_inverter",
    "grid",
)
_BATTERY_DEVICES = ("motion_sensor", "door_sensor", "remote", "thermostat", "lock")
_DOORS = ("front", "back", "garage", "patio", "basement", "shed")
_ROUTINES = ("motion_lights", "night_mode", "heating_schedule", "presence", "window_alert")
_SCRIPTS = ("movie_time", "good_night", "wake_up", "leave_home", "arrive_home", "party_mode")
_PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
_TRACKED = ("phone", "tablet", "watch", "laptop")
_LIGHT_ICONS = ("mdi:ceiling-light", "mdi:lamp", "mdi:led-strip-variant")
_AUTOMATION_MODES = ("single", "restart", "queued", "parallel")

_SENSORS: Mapping[EntityKind, tuple[str, str, str, str]] = MappingProxyType(
    {
        # kind: (device_class, unit, state_class, icon)
        EntityKind.TEMPERATURE: ("temperature", "°C", "measurement", "mdi:thermometer"),
        EntityKind.HUMIDITY: ("humidity", "%", "measurement", "mdi:water-percent"),
        EntityKind.POWER: ("power", "W", "measurement", "mdi:flash"),
        EntityKind.ENERGY: ("energy", "kWh", "total_increasing", "mdi:lightning-bolt"),
        EntityKind.ILLUMINANCE: ("illuminance", "lx", "measurement", "mdi:brightness-5"),
        EntityKind.GAS: ("gas", "m³", "total_increasing", "mdi:meter-gas"),
        EntityKind.BATTERY: ("battery", "%", "measurement", "mdi:battery"),
        EntityKind.PRESSURE: ("pressure", "hPa", "measurement", "mdi:gauge"),
    }
)
# Dynamic sensors cycle through these (device_class, unit).
_DYNAMIC_CLASSES = (
    ("temperature", "°C"),
    ("humidity", "%"),
    ("power", "W"),
    ("voltage", "V"),
    ("current", "A"),
    ("signal_strength", "dBm"),
)
# Random-walk sensors by unit: (low, high, largest step, decimals).
_WALKS: Mapping[str, tuple[float, float, float, int]] = MappingProxyType(
    {
        "°C": (15.0, 30.0, 0.6, 1),
        "°F": (59.0, 86.0, 1.0, 1),
        "%": (25.0, 75.0, 2.0, 1),
        "lx": (0.0, 1200.0, 80.0, 0),
        "hPa": (980.0, 1040.0, 0.8, 1),
        "W": (0.0, 3000.0, 100.0, 1),
        "V": (220.0, 245.0, 1.0, 1),
        "A": (0.0, 16.0, 0.4, 2),
        "dBm": (-90.0, -30.0, 3.0, 0),
    }
)


def _object_ids(count: int, names: tuple[str, ...]) -> Iterator[str]:
    """Unique object ids: each name once, then again with _2, _3… as HA does for duplicates."""
    for index in range(count):
        repeat, position = divmod(index, len(names))
        name = names[position]
        yield name if repeat == 0 else f"{name}_{repeat + 1}"


def _combine(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    """``first_second`` names, varying ``first`` fastest so early names are spread out."""
    return tuple(f"{a}_{b}" for b in second for a in first)


_NAMES: Mapping[EntityKind, tuple[str, ...]] = MappingProxyType(
    {
        EntityKind.LIGHT: _combine(_ROOMS, _FIXTURES),
        EntityKind.TEMPERATURE: _combine(_ROOMS, ("temperature",)),
        EntityKind.HUMIDITY: _combine(_ROOMS, ("humidity",)),
        EntityKind.POWER: _combine(_APPLIANCES, ("power",)),
        EntityKind.ENERGY: _combine(_APPLIANCES, ("energy",)),
        EntityKind.ILLUMINANCE: _combine(_ROOMS, ("illuminance",)),
        EntityKind.GAS: _combine(("gas_meter", "boiler", "stove", "fireplace"), ("gas",)),
        EntityKind.BATTERY: _combine(_combine(_ROOMS, _BATTERY_DEVICES), ("battery",)),
        EntityKind.PRESSURE: _combine(_ROOMS, ("pressure",)),
        EntityKind.DOOR: _combine(_DOORS, ("door",)),
        EntityKind.MOTION: _combine(_ROOMS, ("motion",)),
        EntityKind.WINDOW: _combine(_ROOMS, ("window",)),
        EntityKind.CLIMATE: _ROOMS,
        EntityKind.AUTOMATION: _combine(_ROOMS, _ROUTINES),
        EntityKind.SCRIPT: _SCRIPTS,
        EntityKind.DEVICE_TRACKER: _combine(_PEOPLE, _TRACKED),
    }
)


def _kind_counts(total: int, *, high_cardinality: bool) -> dict[EntityKind, int]:
    """How many entities of each kind a home of ``total`` entities has."""
    dynamic = 0
    if high_cardinality:
        dynamic = max(HIGH_CARDINALITY_MIN_DYNAMIC, total - DEFAULT_ENTITY_COUNT)
    realistic = max(0, total - dynamic)
    dynamic = total - realistic
    # Largest-remainder apportionment of the default mix; exact for the default home.
    counts: dict[EntityKind, int] = {}
    remainders = []
    for kind in _REALISTIC_KINDS:
        quota, remainder = divmod(realistic * _PROFILES[kind].default_count, DEFAULT_ENTITY_COUNT)
        counts[kind] = quota
        remainders.append((-remainder, _REALISTIC_KINDS.index(kind), kind))
    for _, _, kind in sorted(remainders)[: realistic - sum(counts.values())]:
        counts[kind] += 1
    # A small home still gets one of everything while there is room.
    if realistic >= len(_REALISTIC_KINDS):
        for kind in _REALISTIC_KINDS:
            if counts[kind] == 0:
                counts[max(counts, key=counts.__getitem__)] -= 1
                counts[kind] = 1
    counts[EntityKind.DYNAMIC] = dynamic
    return counts


def _friendly_name(object_id: str) -> str:
    return object_id.replace("_", " ").title()


def _spec(kind: EntityKind, index: int, object_id: str) -> EntitySpec:
    domain = _PROFILES[kind].domain
    attributes: dict[str, Any] = {}
    if kind in _SENSORS:
        device_class, unit, state_class, icon = _SENSORS[kind]
        if kind is EntityKind.TEMPERATURE and index % 3 == 2:
            unit = "°F"
        attributes = {
            "state_class": state_class,
            "unit_of_measurement": unit,
            "device_class": device_class,
            "friendly_name": _friendly_name(object_id),
        }
        if index % 4 == 1:
            attributes["icon"] = icon
    elif kind is EntityKind.DYNAMIC:
        device_class, unit = _DYNAMIC_CLASSES[index % len(_DYNAMIC_CLASSES)]
        attributes = {
            "state_class": "measurement",
            "unit_of_measurement": unit,
            "device_class": device_class,
            "friendly_name": _friendly_name(object_id),
        }
    elif kind is EntityKind.LIGHT:
        color_temp = index % 3 != 2
        attributes = {"supported_color_modes": ["color_temp"] if color_temp else ["brightness"]}
        if color_temp:
            attributes |= {
                "min_color_temp_kelvin": 2000,
                "max_color_temp_kelvin": 6535,
                "min_mireds": 153,
                "max_mireds": 500,
            }
        attributes["friendly_name"] = _friendly_name(object_id)
        if index % 5 == 0:
            attributes["icon"] = _LIGHT_ICONS[index % len(_LIGHT_ICONS)]
        attributes["supported_features"] = 40 if color_temp else 32
    elif kind in {EntityKind.DOOR, EntityKind.MOTION, EntityKind.WINDOW}:
        attributes = {"device_class": kind.value, "friendly_name": _friendly_name(object_id)}
    elif kind is EntityKind.CLIMATE:
        attributes = {
            "hvac_modes": ["off", "heat", "cool", "auto"],
            "min_temp": 7.0,
            "max_temp": 35.0,
            "target_temp_step": 0.5,
            "friendly_name": _friendly_name(object_id),
            "supported_features": 387,
        }
    elif kind is EntityKind.AUTOMATION:
        attributes = {
            "id": f"{1700000000000 + index * 7919}",
            "mode": _AUTOMATION_MODES[index % len(_AUTOMATION_MODES)],
            "friendly_name": _friendly_name(object_id),
        }
    elif kind is EntityKind.SCRIPT:
        attributes = {"mode": "single", "friendly_name": _friendly_name(object_id)}
        if index % 2 == 0:
            attributes["icon"] = "mdi:script-text"
    elif kind is EntityKind.DEVICE_TRACKER:
        if index % 3 == 2:
            attributes = {
                "source_type": "router",
                "ip": f"192.168.1.{20 + index % 200}",
                "mac": f"AA:BB:CC:{index // 65536 % 256:02X}:{index // 256 % 256:02X}:"
                f"{index % 256:02X}",
                "host_name": object_id.replace("_", "-"),
            }
        else:
            attributes = {"source_type": "gps"}
        attributes["friendly_name"] = _friendly_name(object_id)
    return EntitySpec(f"{domain}.{object_id}", kind, MappingProxyType(attributes))


def entity_catalog(config: GeneratorConfig) -> list[EntitySpec]:
    """The entities of the simulated home, the same for every seed, count and pattern."""
    counts = _kind_counts(config.total_entities, high_cardinality=config.high_cardinality)
    catalog: list[EntitySpec] = []
    for kind in _REALISTIC_KINDS:
        object_ids = _object_ids(counts[kind], _NAMES[kind])
        catalog.extend(_spec(kind, index, oid) for index, oid in enumerate(object_ids))
    width = max(4, len(str(counts[EntityKind.DYNAMIC])))
    catalog.extend(
        _spec(EntityKind.DYNAMIC, index, f"dynamic_{index + 1:0{width}d}")
        for index in range(counts[EntityKind.DYNAMIC])
    )
    return catalog


# --- How each kind of entity behaves --------------------------------------------------------

type _Step = tuple[str, dict[str, Any]]


class _Model:
    """The changing state of one entity; ``step`` moves it to its next state."""

    __slots__ = ("_attributes",)

    def __init__(self, spec: EntitySpec) -> None:
        self._attributes = spec.attributes

    def step(self, rng: random.Random, when: datetime) -> _Step:
        raise NotImplementedError


class _Walk(_Model):
    """A measurement drifting within a realistic range."""

    __slots__ = ("_format", "_high", "_low", "_step", "_value")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._low, self._high, self._step, decimals = _WALKS[spec.attributes["unit_of_measurement"]]
        self._format = f".{decimals}f"
        middle, spread = (self._low + self._high) / 2, (self._high - self._low) / 2
        self._value = middle + (rng.random() - 0.5) * spread

    def step(self, rng: random.Random, when: datetime) -> _Step:
        value = self._value + (rng.random() - 0.5) * self._step
        if value < self._low:
            value = 2 * self._low - value
        elif value > self._high:
            value = 2 * self._high - value
        self._value = value
        return format(value, self._format), dict(self._attributes)


class _Power(_Model):
    """An appliance that idles, then jumps to a working level, with a little noise."""

    __slots__ = ("_level", "_peak")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._peak = 200.0 + rng.random() * 2800.0
        self._level = rng.random() * 5.0

    def step(self, rng: random.Random, when: datetime) -> _Step:
        if rng.random() < 0.1:
            self._level = rng.random() * self._peak if rng.random() < 0.5 else rng.random() * 5.0
        value = self._level * (0.95 + rng.random() * 0.1)
        return format(value, ".1f"), dict(self._attributes)


class _Meter(_Model):
    """A cumulative meter (energy, gas) that only ever goes up."""

    __slots__ = ("_increment", "_value")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._value = 100.0 + rng.random() * 5000.0
        self._increment = 0.002 + rng.random() * 0.05

    def step(self, rng: random.Random, when: datetime) -> _Step:
        self._value += 0.001 + rng.random() * self._increment
        return format(self._value, ".3f"), dict(self._attributes)


class _Battery(_Model):
    """A battery draining a percent at a time until it is replaced."""

    __slots__ = ("_level",)

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._level = rng.randint(20, 100)

    def step(self, rng: random.Random, when: datetime) -> _Step:
        self._level = 100 if self._level <= 5 else self._level - 1
        return str(self._level), dict(self._attributes)


class _Toggle(_Model):
    """A binary sensor: every change flips it."""

    __slots__ = ("_on",)

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._on = False

    def step(self, rng: random.Random, when: datetime) -> _Step:
        self._on = not self._on
        return ("on" if self._on else "off"), dict(self._attributes)


class _Light(_Model):
    """A light switched on and off, dimmed and tinted while on."""

    __slots__ = ("_brightness", "_color_temp", "_kelvin", "_on")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._on = False
        self._brightness = 255
        self._kelvin = 2700 if "color_temp" in spec.attributes["supported_color_modes"] else None

    def step(self, rng: random.Random, when: datetime) -> _Step:
        if not self._on or rng.random() < 0.6:
            self._on = not self._on
        if self._on and rng.random() < 0.5:
            self._brightness = rng.randint(1, 255)
            if self._kelvin is not None:
                self._kelvin = rng.randint(2000, 6535)
        attributes = dict(self._attributes)
        if self._on:
            attributes["brightness"] = self._brightness
            if self._kelvin is None:
                attributes["color_mode"] = "brightness"
            else:
                attributes["color_mode"] = "color_temp"
                attributes["color_temp_kelvin"] = self._kelvin
                attributes["color_temp"] = round(1_000_000 / self._kelvin)
            return "on", attributes
        attributes["brightness"] = None
        attributes["color_mode"] = None
        if self._kelvin is not None:
            attributes["color_temp_kelvin"] = None
            attributes["color_temp"] = None
        return "off", attributes


class _Climate(_Model):
    """A thermostat: the room temperature drifts towards the target while it works."""

    __slots__ = ("_current", "_high", "_low", "_mode", "_target")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._mode = ("heat", "heat", "auto", "cool", "off")[rng.randrange(5)]
        self._target = 20.0 + rng.randrange(5) * 0.5
        self._low, self._high = 19.0, 24.0
        self._current = 17.0 + rng.random() * 8.0

    def step(self, rng: random.Random, when: datetime) -> _Step:
        roll = rng.random()
        if roll < 0.03:
            self._mode = ("heat", "cool", "auto", "off")[rng.randrange(4)]
        elif roll < 0.1:
            self._target = 17.0 + rng.randrange(13) * 0.5
        action = self._action()
        drift = {"heating": 0.1, "cooling": -0.1}.get(action, 0.0)
        self._current = min(30.0, max(12.0, self._current + drift + (rng.random() - 0.5) * 0.2))
        current = round(self._current, 1)
        attributes = dict(self._attributes)
        attributes["current_temperature"] = current
        if self._mode == "auto":
            attributes["temperature"] = None
            attributes["target_temp_high"] = self._high
            attributes["target_temp_low"] = self._low
        else:
            attributes["temperature"] = self._target
            attributes["target_temp_high"] = None
            attributes["target_temp_low"] = None
        attributes["hvac_action"] = self._action()
        return self._mode, attributes

    def _action(self) -> str:
        current = self._current
        if self._mode == "off":
            return "off"
        if self._mode == "heat":
            return "heating" if current < self._target - 0.2 else "idle"
        if self._mode == "cool":
            return "cooling" if current > self._target + 0.2 else "idle"
        if current < self._low:
            return "heating"
        return "cooling" if current > self._high else "idle"


class _Automation(_Model):
    """An automation that mostly triggers, and is now and then switched off and on."""

    __slots__ = ("_last_triggered", "_on")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._on = True
        self._last_triggered: str | None = None

    def step(self, rng: random.Random, when: datetime) -> _Step:
        if rng.random() < 0.05:
            self._on = not self._on
        elif self._on:
            self._last_triggered = when.isoformat()
        attributes = dict(self._attributes)
        attributes["last_triggered"] = self._last_triggered
        attributes["current"] = 0
        return ("on" if self._on else "off"), attributes


class _Script(_Model):
    """A script that starts (recording when) and finishes."""

    __slots__ = ("_last_triggered", "_running")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._running = False
        self._last_triggered: str | None = None

    def step(self, rng: random.Random, when: datetime) -> _Step:
        self._running = not self._running
        if self._running:
            self._last_triggered = when.isoformat()
        attributes = dict(self._attributes)
        attributes["last_triggered"] = self._last_triggered
        attributes["current"] = 1 if self._running else 0
        return ("on" if self._running else "off"), attributes


_HOME = (52.3731, 4.8922)


class _Tracker(_Model):
    """A person's device coming and going; GPS trackers report where and how precisely."""

    __slots__ = ("_battery", "_gps", "_home")

    def __init__(self, spec: EntitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        self._home = rng.random() < 0.6
        self._gps = spec.attributes["source_type"] == "gps"
        self._battery = rng.randint(30, 100)

    def step(self, rng: random.Random, when: datetime) -> _Step:
        self._home = not self._home
        attributes = dict(self._attributes)
        if self._gps:
            reach = 0.0005 if self._home else 0.2
            attributes["latitude"] = round(_HOME[0] + (rng.random() - 0.5) * reach, 6)
            attributes["longitude"] = round(_HOME[1] + (rng.random() - 0.5) * reach, 6)
            attributes["gps_accuracy"] = rng.randint(5, 65)
            self._battery = max(5, self._battery - rng.randrange(3))
            attributes["battery_level"] = self._battery
        return ("home" if self._home else "not_home"), attributes


_MODELS: Mapping[EntityKind, Callable[[EntitySpec, random.Random], _Model]] = MappingProxyType(
    {
        EntityKind.LIGHT: _Light,
        EntityKind.TEMPERATURE: _Walk,
        EntityKind.HUMIDITY: _Walk,
        EntityKind.POWER: _Power,
        EntityKind.ENERGY: _Meter,
        EntityKind.ILLUMINANCE: _Walk,
        EntityKind.GAS: _Meter,
        EntityKind.BATTERY: _Battery,
        EntityKind.PRESSURE: _Walk,
        EntityKind.DOOR: _Toggle,
        EntityKind.MOTION: _Toggle,
        EntityKind.WINDOW: _Toggle,
        EntityKind.CLIMATE: _Climate,
        EntityKind.AUTOMATION: _Automation,
        EntityKind.SCRIPT: _Script,
        EntityKind.DEVICE_TRACKER: _Tracker,
        EntityKind.DYNAMIC: _Walk,
    }
)


# --- When events happen ---------------------------------------------------------------------


class _BurstWarp:
    """Maps evenly spread positions in [0, 1] onto a period of quiet stretches and bursts.

    The mapping is monotonic (the inverse of a piecewise-constant density), so positions that
    are in order stay in order.
    """

    __slots__ = ("_mass", "_slope", "_time")

    def __init__(self, rng: random.Random) -> None:
        bursts = rng.randint(3, 6)
        burst = [0.5 + rng.random() for _ in range(bursts)]
        quiet = [0.5 + rng.random() for _ in range(bursts + 1)]
        burst_scale, quiet_scale = (
            _BURST_TIME_SHARE / sum(burst),
            (1 - _BURST_TIME_SHARE) / sum(quiet),
        )
        burst_density = _BURST_EVENT_SHARE / _BURST_TIME_SHARE
        quiet_density = (1 - _BURST_EVENT_SHARE) / (1 - _BURST_TIME_SHARE)
        segments = [(quiet[0] * quiet_scale, quiet_density)]
        for length, gap in zip(burst, quiet[1:], strict=True):
            segments += [(length * burst_scale, burst_density), (gap * quiet_scale, quiet_density)]
        self._time, self._mass, self._slope = [], [], []
        time = mass = 0.0
        for length, density in segments:
            self._time.append(time)
            self._mass.append(mass)
            self._slope.append(1 / density)
            time += length
            mass += length * density

    def __call__(self, position: float) -> float:
        segment = bisect_right(self._mass, position) - 1
        return self._time[segment] + (position - self._mass[segment]) * self._slope[segment]


def _offsets(
    count: int,
    timing: _Timing,
    window_us: int,
    rng: random.Random,
    warp: _BurstWarp,
) -> Iterator[int]:
    """One entity's event times in microseconds into the period, MIN_ENTITY_GAP or more apart.

    Each raw time is clamped between the previous one plus the gap and the latest time that
    still leaves room for the rest, which the validated period length guarantees exists.
    """
    latest = window_us - (count - 1) * _MIN_GAP_US
    earliest = 0
    phase = 0.05 + 0.9 * rng.random()
    position = 0.0
    for index in range(count):
        if timing is _Timing.EVEN:
            fraction = (index + rng.random()) / count
        elif timing is _Timing.PERIODIC:
            fraction = (index + phase + (rng.random() - 0.5) * _PERIODIC_JITTER) / count
        else:
            # The next of `count` sorted uniform positions, drawn one at a time.
            position = 1.0 - (1.0 - position) * rng.random() ** (1.0 / (count - index))
            fraction = warp(position) if timing is _Timing.BURST else position
        offset = int(fraction * window_us)
        if offset < earliest:
            offset = earliest
        elif offset > latest:
            offset = latest
        yield offset
        earliest = offset + _MIN_GAP_US
        latest += _MIN_GAP_US


def _allocate(weights: list[int], count: int, rng: random.Random) -> list[int]:
    """Split ``count`` events over entities in proportion to ``weights``, exactly.

    Systematic sampling with a random start: each entity gets its share rounded down or up,
    so with fewer events than entities every entity has a fair chance of getting one.
    """
    total = sum(weights)
    start = rng.randrange(total)
    allocation = []
    cumulative = 0
    previous = 0
    for weight in weights:
        cumulative += weight
        boundary = (cumulative * count + start) // total
        allocation.append(boundary - previous)
        previous = boundary
    return allocation


def generate(config: GeneratorConfig) -> Iterator[GeneratedState]:
    """Yield ``config.count`` state changes in time order, lazily, reproducibly from the seed."""
    catalog = entity_catalog(config)
    rng = random.Random(config.seed)
    weights = [_weight(spec.kind, config.pattern) for spec in catalog]
    allocation = _allocate(weights, config.count, rng)
    models = [_MODELS[spec.kind](spec, rng) for spec in catalog]
    warp = _BurstWarp(rng)
    window_us = (config.end - config.start) // _MICROSECOND
    streams = [
        _offsets(events, _timing(spec.kind, config.pattern), window_us, rng, warp)
        for spec, events in zip(catalog, allocation, strict=True)
    ]
    start = config.start.astimezone(UTC)
    return _merge(
        start=start,
        catalog=catalog,
        models=models,
        streams=streams,
        allocation=allocation,
        rng=rng,
    )


def _merge(
    *,
    start: datetime,
    catalog: list[EntitySpec],
    models: list[_Model],
    streams: list[Iterator[int]],
    allocation: list[int],
    rng: random.Random,
) -> Iterator[GeneratedState]:
    """Interleave the entities' streams in time order and give each event its state."""
    entities = len(catalog)
    # One int per entity on the heap: time * entities + index orders by time, then by index.
    heap = [
        next(stream) * entities + index
        for index, (stream, events) in enumerate(zip(streams, allocation, strict=True))
        if events
    ]
    heapq.heapify(heap)
    entity_ids = [spec.entity_id for spec in catalog]
    static = [spec.attributes for spec in catalog]
    heappop, heapreplace, draw = heapq.heappop, heapq.heapreplace, rng.random
    while heap:
        offset, index = divmod(heap[0], entities)
        following = next(streams[index], None)
        if following is None:
            heappop(heap)
        else:
            heapreplace(heap, following * entities + index)
        when = start + offset * _MICROSECOND
        if draw() < UNAVAILABLE_SHARE:
            state = "unavailable" if draw() < 0.7 else "unknown"
            yield GeneratedState(entity_ids[index], state, dict(static[index]), when)
        else:
            state, attributes = models[index].step(rng, when)
            yield GeneratedState(entity_ids[index], state, attributes, when)


def summarize(states: Iterable[GeneratedState]) -> dict[str, int]:
    """Count events per domain, domains in alphabetical order."""
    counts = Counter(state.entity_id.partition(".")[0] for state in states)
    return dict(sorted(counts.items()))
