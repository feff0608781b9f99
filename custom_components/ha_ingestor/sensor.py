"""Sensors: what the live writer and the migration are doing."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import IngestorConfigEntry
from .coordinator import IngestorSnapshot
from .engine.migration.model import Phase
from .entity import IngestorEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IngestorSensorDescription(SensorEntityDescription):
    """A sensor is a description and a function reading its value from a snapshot."""

    value_fn: Callable[[IngestorSnapshot], float | int | str | datetime | None]
    # A running total that goes on from its last value after a restart or a reload.
    restore_total: bool = False


SENSORS: tuple[IngestorSensorDescription, ...] = (
    IngestorSensorDescription(
        key="write_queue_depth",
        translation_key="write_queue_depth",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="points",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,  # changes at every flush, for ever
        value_fn=lambda snapshot: snapshot.recording.queue_depth,
    ),
    IngestorSensorDescription(
        key="spooled_points",
        translation_key="spooled_points",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="points",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda snapshot: snapshot.recording.spooled_points,
    ),
    IngestorSensorDescription(
        key="dead_letter_count",
        translation_key="dead_letter_count",
        state_class=SensorStateClass.TOTAL,
        native_unit_of_measurement="points",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda snapshot: snapshot.recording.dead_letter_count,
    ),
    IngestorSensorDescription(
        key="points_written",
        translation_key="points_written",
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement="points",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,  # changes at every flush, for ever
        value_fn=lambda snapshot: snapshot.recording.points_written,
        restore_total=True,
    ),
    IngestorSensorDescription(
        key="migration_phase",
        translation_key="migration_phase",
        device_class=SensorDeviceClass.ENUM,
        options=[phase.value for phase in Phase],
        value_fn=lambda snapshot: snapshot.phase.value,
    ),
    IngestorSensorDescription(
        key="migration_progress",
        translation_key="migration_progress",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda snapshot: snapshot.progress,
    ),
    IngestorSensorDescription(
        key="records_migrated",
        translation_key="records_migrated",
        native_unit_of_measurement="points",
        state_class=SensorStateClass.TOTAL,
        value_fn=lambda snapshot: snapshot.records_migrated,
    ),
    IngestorSensorDescription(
        key="records_total",
        translation_key="records_total",
        native_unit_of_measurement="points",
        value_fn=lambda snapshot: snapshot.records_total,
    ),
    IngestorSensorDescription(
        key="records_failed",
        translation_key="records_failed",
        native_unit_of_measurement="points",
        state_class=SensorStateClass.TOTAL,
        value_fn=lambda snapshot: snapshot.records_failed,
    ),
    IngestorSensorDescription(
        key="error_rate",
        translation_key="error_rate",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda snapshot: snapshot.error_rate_percent,
    ),
    IngestorSensorDescription(
        key="data_integrity",
        translation_key="data_integrity",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda snapshot: snapshot.integrity_percent,
    ),
    IngestorSensorDescription(
        key="throughput",
        translation_key="throughput",
        native_unit_of_measurement="points/s",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda snapshot: snapshot.throughput,
    ),
    IngestorSensorDescription(
        key="eta",
        translation_key="eta",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda snapshot: snapshot.eta,
    ),
    IngestorSensorDescription(
        key="cleanup_due",
        translation_key="cleanup_due",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda snapshot: snapshot.cleanup_due,
    ),
    IngestorSensorDescription(
        key="query_time_improvement",
        translation_key="query_time_improvement",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda snapshot: snapshot.query_time_improvement,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IngestorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One sensor per description."""
    async_add_entities(
        (IngestorTotalSensor if description.restore_total else IngestorSensor)(entry, description)
        for description in SENSORS
    )


class IngestorSensor(IngestorEntity, SensorEntity):
    """A figure of the ingestion or the migration."""

    _entity_platform = "sensor"

    entity_description: IngestorSensorDescription

    @property
    def native_value(self) -> float | int | str | datetime | None:
        """From the snapshot the coordinator pushed last."""
        return self.entity_description.value_fn(self.snapshot)


class IngestorTotalSensor(IngestorSensor, RestoreSensor):
    """A running total kept across restarts and reloads (the writers count from zero)."""

    _base = 0

    async def async_added_to_hass(self) -> None:
        """Continue from the value shown before the restart or reload."""
        await super().async_added_to_hass()
        last = await self.async_get_last_sensor_data()
        if last is not None and isinstance(last.native_value, int | float):
            self._base = int(last.native_value)

    @property
    def native_value(self) -> float | int | str | datetime | None:
        """The total since the first start."""
        value = self.entity_description.value_fn(self.snapshot)
        return self._base + value if isinstance(value, int) else value
