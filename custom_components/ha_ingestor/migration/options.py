"""What an entry's options say about its migration: the only part of it that reads them."""

from collections.abc import Awaitable, Callable, Mapping
import copy
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

from ..const import CONF_OPTIMIZED_DATABASE, CONF_WRITE_MODE, SECTION_INGESTION, WriteMode
from ..engine.influx import InfluxClient
from ..engine.migration.ledger import MigrationLedger
from ..engine.migration.model import MigrationConfig, MigrationState, Strategy
from ..engine.migration.validation import Validator
from ..layouts.optimized import LegacyTransform
from ..options import EntryOptions
from ..recording import area_lookup


class MigrationOptions:
    """The entry's migration settings, its transform and target, and the options a
    completed migration writes back."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        options: EntryOptions,
        *,
        client: InfluxClient,
        validator: type[Validator] = Validator,
    ) -> None:
        """``options``: the entry's options as setup parsed them."""
        self._hass = hass
        self._entry = entry
        self._options = options
        self._client = client
        self._validator = validator
        # The options a completed migration wrote, until the update listener sees them.
        self._own_options: dict[str, Any] | None = None

    def use(self, options: EntryOptions) -> None:
        """Take options changed without a reload."""
        self._options = options

    def default_config(self) -> MigrationConfig:
        """The migration options of the entry, before per-call overrides."""
        return self._options.migration

    def target_for(self, strategy: Strategy) -> str:
        configured = self._options.target_database
        source = self._client.database
        if strategy.separate_target:
            return configured if configured and configured != source else f"{source}_optimized"
        return configured or source

    def transform(self) -> LegacyTransform:
        return LegacyTransform(
            self._options.legacy,
            self._options.optimized,
            area_lookup(self._hass),
        )

    def validator(self, state: MigrationState, ledger: MigrationLedger) -> Validator:
        return self._validator(
            self._client,
            state,
            transform=self.transform(),
            source_database=ledger.source_database,
            target_database=ledger.target_database,
            rollups=state.rollups_filled,
        )

    @property
    def rollups_enabled(self) -> bool:
        return self._options.rollups

    async def async_apply_completion(
        self, ledger: MigrationLedger, save: Callable[[], Awaitable[None]]
    ) -> None:
        """Make the options say what a completed migration leaves recorded: the optimized
        layout, into the database it migrated to."""
        if ledger.options_applied:
            return
        options = copy.deepcopy(dict(self._entry.options))
        ingestion = dict(options.get(SECTION_INGESTION, {}))
        ingestion[CONF_WRITE_MODE] = WriteMode.OPTIMIZED.value
        if ledger.separate_target:
            ingestion[CONF_OPTIMIZED_DATABASE] = ledger.target_database
        else:
            ingestion.pop(CONF_OPTIMIZED_DATABASE, None)
        options[SECTION_INGESTION] = ingestion
        # Saved first: the options update reloads the entry, which ends this task. A crash in
        # between leaves the configured recording running, which loses nothing.
        ledger.options_applied = True
        await save()
        if options != dict(self._entry.options):
            self._own_options = options
            self._hass.config_entries.async_update_entry(self._entry, options=options)

    def owns(self, options: Mapping[str, Any]) -> bool:
        """Whether ``options`` are the ones this migration just wrote (once per write)."""
        mine, self._own_options = self._own_options, None
        return mine is not None and dict(options) == mine
