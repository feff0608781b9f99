"""Binary sensors: is InfluxDB reachable, is a migration running."""

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import IngestorConfigEntry
from .coordinator import IngestorSnapshot
from .entity import IngestorEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IngestorBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor is a description and a function reading it from a snapshot."""

    is_on_fn: Callable[[IngestorSnapshot], bool]


BINARY_SENSORS: tuple[IngestorBinarySensorDescription, ...] = (
    IngestorBinarySensorDescription(
        key="influxdb_connected",
        translation_key="influxdb_connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        # The live writers and a running backfill each find out on their own.
        is_on_fn=lambda snapshot: snapshot.connected,
    ),
    IngestorBinarySensorDescription(
        key="migration_running",
        translation_key="migration_running",
        device_class=BinarySensorDeviceClass.RUNNING,
        is_on_fn=lambda snapshot: snapshot.running,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IngestorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One binary sensor per description."""
    async_add_entities(IngestorBinarySensor(entry, d) for d in BINARY_SENSORS)


class IngestorBinarySensor(IngestorEntity, BinarySensorEntity):
    """A yes/no fact about the ingestion or the migration."""

    _entity_platform = "binary_sensor"

    entity_description: IngestorBinarySensorDescription

    @property
    def is_on(self) -> bool:
        """From the snapshot the coordinator pushed last."""
        return self.entity_description.is_on_fn(self.snapshot)
