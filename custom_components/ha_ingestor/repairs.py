"""Fix flows for the migration's repair issues: resume it or roll it back from Repairs."""

from typing import Any

from homeassistant import data_entry_flow
from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

# Issue key → the actions its fix flow offers.
FIX_ACTIONS: dict[str, list[str]] = {
    "migration_paused": ["resume", "rollback"],
    "cleanup_paused": ["resume", "rollback"],
    "migration_failed": ["rollback"],
    "rollback_incomplete": ["rollback"],
}


class MigrationFixFlow(RepairsFlow):
    """A menu of what can be done about a stopped migration, then the chosen action."""

    def __init__(self, key: str, entry_id: str) -> None:
        self._key = key
        self._entry_id = entry_id

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> data_entry_flow.FlowResult:
        """Offer the actions (a single one is confirmed directly)."""
        actions = FIX_ACTIONS[self._key]
        if len(actions) == 1:
            return await self.async_step_rollback()
        return self.async_show_menu(
            step_id="init", menu_options=actions, description_placeholders=self._shown()
        )

    async def async_step_resume(
        self, user_input: dict[str, Any] | None = None
    ) -> data_entry_flow.FlowResult:
        """Resume from where the migration stopped."""
        if user_input is None:
            return self.async_show_form(step_id="resume", description_placeholders=self._shown())
        return await self._act("resume")

    async def async_step_rollback(
        self, user_input: dict[str, Any] | None = None
    ) -> data_entry_flow.FlowResult:
        """Roll the migration back (its migrated data removed)."""
        if user_input is None:
            return self.async_show_form(step_id="rollback", description_placeholders=self._shown())
        return await self._act("rollback")

    def _shown(self) -> dict[str, str]:
        """The issue's own placeholders, for the steps that repeat them."""
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        return dict(issue.translation_placeholders or {}) if issue else {}

    async def _act(self, action: str) -> data_entry_flow.FlowResult:
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        migration = entry.runtime_data.migration
        try:
            if action == "resume":
                await migration.async_resume()
            else:
                await migration.async_rollback(reason="Rolled back from Repairs", keep_target=False)
        except HomeAssistantError as err:
            return self.async_abort(
                reason="action_failed",
                description_placeholders={"error": str(err) or type(err).__name__},
            )
        return self.async_create_entry(data={})


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """The fix flow of one of our issues (its data names the issue and the entry)."""
    assert data is not None
    return MigrationFixFlow(str(data["key"]), str(data["entry_id"]))
