"""The two layouts a query moves between: the tags each keeps and the entity settings of both."""

from dataclasses import dataclass
from functools import cached_property
import re
from typing import Final

from ..layouts.legacy import LegacyOptions
from ..layouts.optimized import IDENTITY_ATTRIBUTES, OptimizedOptions
from .rewrite import Refusal

ENTITY_ID: Final = "entity_id"
DOMAIN: Final = "domain"
UNIT: Final = "unit_of_measurement"
DEVICE_CLASS: Final = "device_class"

# Home Assistant's valid_entity_id and domain rules (kept here so this module needs no hass).
_ENTITY_ID: Final = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$", re.ASCII)
_DOMAIN: Final = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)$", re.ASCII)


def looks_like_entity_id(text: str) -> bool:
    """Whether ``text`` has the shape of a Home Assistant entity id."""
    return _ENTITY_ID.match(text) is not None


def looks_like_domain(text: str) -> bool:
    """Whether ``text`` has the shape of a Home Assistant domain."""
    return _DOMAIN.match(text) is not None


@dataclass(frozen=True)
class LayoutPair:
    """The legacy options a query was written for and the optimized options it is moved to."""

    legacy: LegacyOptions
    optimized: OptimizedOptions

    @cached_property
    def global_tags(self) -> frozenset[str]:
        """The configured global tags both layouts write."""
        return frozenset(self.legacy.tags) & frozenset(self.optimized.tags)

    @cached_property
    def identity_tags_attributes(self) -> frozenset[str]:
        """The legacy tags_attributes the optimized layout also keeps as tags."""
        return frozenset(self.legacy.tags_attributes) & frozenset(IDENTITY_ATTRIBUTES)

    @cached_property
    def legacy_tags(self) -> frozenset[str]:
        """Every tag a legacy point may carry."""
        return frozenset(
            {DOMAIN, ENTITY_ID, *self.legacy.tags_attributes, *self.legacy.tags} - {""}
        )

    def keeps_tag(self, name: str) -> bool:
        """Whether the legacy tag ``name`` is a tag of the optimized points too, value as is."""
        return name in self.global_tags or name in self.identity_tags_attributes

    @cached_property
    def ignored_identity(self) -> frozenset[str]:
        """Identity attributes some entity ignores: their tags are not reliable."""
        ignored = set(self.legacy.ignore_attributes) | set(self.optimized.ignore_attributes)
        for options in (self.legacy, self.optimized):
            for level in (
                options.component_config,
                options.component_config_domain,
                options.component_config_glob,
            ):
                for customization in level.values():
                    ignored.update(customization.ignore_attributes or ())
        return frozenset(ignored) & frozenset(IDENTITY_ATTRIBUTES)

    @cached_property
    def overrides(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Per-entity override_measurement: by entity id, by domain, by glob."""
        legacy = self.legacy
        exact, by_domain, by_glob = (
            {
                key: customization.override_measurement
                for key, customization in level.items()
                if customization.override_measurement is not None
            }
            for level in (
                legacy.component_config,
                legacy.component_config_domain,
                legacy.component_config_glob,
            )
        )
        return exact, by_domain, by_glob

    @cached_property
    def override_targets(self) -> frozenset[str]:
        """The measurements per-entity overrides write to."""
        return frozenset(value for level in self.overrides for value in level.values())

    def check_overrides(self) -> None:
        """Refuse settings under which no measurement can be told apart."""
        if "" in self.override_targets:
            raise Refusal(
                "an empty per-entity override_measurement (which falls back to the global "
                "setting) is not supported"
            )

    def check_attribute_usable(self, name: str) -> None:
        """Refuse selecting points by the identity tag ``name`` when some entity ignores it."""
        if name in self.ignored_identity:
            raise Refusal(
                f"{name} is in ignore_attributes, so the optimized layout has no {name} tag "
                "to select the legacy measurement's points by"
            )

    def group_by_star_tags(self) -> list[str]:
        """The tags ``GROUP BY *`` groups legacy series by, as optimized tags."""
        legacy = self.legacy
        others = set(legacy.tags_attributes) - set(IDENTITY_ATTRIBUTES) - set(legacy.tags)
        others |= set(legacy.tags) - set(self.optimized.tags)
        if others:
            raise Refusal(
                f"GROUP BY * includes the tags {', '.join(sorted(others))}, which are not in "
                "the optimized layout"
            )
        attributes = sorted(self.identity_tags_attributes - set(legacy.tags))
        return [ENTITY_ID, *attributes, *sorted(self.global_tags)]
