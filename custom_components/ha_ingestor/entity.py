"""The base entity: one device per config entry, updated by the entry's push coordinator."""

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from . import IngestorConfigEntry
from .const import DOMAIN
from .coordinator import IngestorCoordinator, IngestorSnapshot
from .engine.influx import ApiVersion


class IngestorEntity(CoordinatorEntity[IngestorCoordinator]):
    """Shows a figure of the entry's ingestion or migration; updated by push, never polled."""

    _attr_has_entity_name = True

    # The platform's domain, for the entity id this entity asks for.
    _entity_platform: str

    def __init__(self, entry: IngestorConfigEntry, description: EntityDescription) -> None:
        super().__init__(entry.runtime_data.coordinator)
        self.entity_description = description
        self._entry = entry
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        # Predictable ids (sensor.ha_ingestor_migration_phase) so the shipped dashboard and
        # automations work as they are for the first entry; a second entry gets "_2".
        self.entity_id = f"{self._entity_platform}.{DOMAIN}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer="InfluxData",
            model=f"InfluxDB {entry.runtime_data.client.settings.api_version.value}.x",
            entry_type=DeviceEntryType.SERVICE,
            # InfluxDB 1.x serves no web page; 2.x has its UI at the server's address.
            configuration_url=(
                entry.runtime_data.client.settings.url
                if entry.runtime_data.client.settings.api_version is ApiVersion.V2
                else None
            ),
        )

    @property
    def snapshot(self) -> IngestorSnapshot:
        """What the coordinator published last."""
        return self.coordinator.data
