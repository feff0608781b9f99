"""What the legacy database holds, per measurement: read with SHOW TAG VALUES, kept as JSON."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..engine.influxql import quote_string


@dataclass(frozen=True, slots=True)
class MeasurementContents:
    """What one legacy measurement holds: its domains and entities.

    ``entity_ids`` are the full ids whose domain is known for sure; ``object_ids`` all the
    ``entity_id`` tag values, also those of a measurement shared by several domains.
    """

    domains: frozenset[str]
    object_ids: frozenset[str] = frozenset()
    entity_ids: frozenset[str] = frozenset()

    def domains_of(self, object_id: str) -> frozenset[str]:
        """The domains an object id may belong to in this measurement (empty: not here)."""
        known = frozenset(
            domain for domain in self.domains if f"{domain}.{object_id}" in self.entity_ids
        )
        if known:
            return known
        return self.domains if object_id in self.object_ids else frozenset()


@dataclass(frozen=True)
class LegacyCatalog:
    """The legacy measurements of a database and what each holds (from SHOW TAG VALUES)."""

    measurements: Mapping[str, MeasurementContents] = field(default_factory=dict)

    @classmethod
    def from_tag_values(
        cls,
        domains: Mapping[str, Iterable[str]],
        object_ids: Mapping[str, Iterable[str]] | None = None,
        entity_ids: Mapping[str, Iterable[str]] | None = None,
    ) -> "LegacyCatalog":
        """Build from measurement → domain values, → entity_id values, → known full ids.

        A measurement with one domain has all its entities known for sure.
        """
        measurements: dict[str, MeasurementContents] = {}
        for name, values in domains.items():
            domain_set = frozenset(values)
            objects = frozenset((object_ids or {}).get(name, ()))
            known = set((entity_ids or {}).get(name, ()))
            if len(domain_set) == 1:
                (only,) = domain_set
                known.update(f"{only}.{object_id}" for object_id in objects)
            measurements[name] = MeasurementContents(
                domain_set,
                objects | {entity.partition(".")[2] for entity in known},
                frozenset(known),
            )
        return cls(measurements)

    @classmethod
    def from_series(
        cls,
        domain_series: Iterable[Mapping[str, Any]],
        entity_series: Mapping[str, Iterable[Mapping[str, Any]]],
    ) -> "LegacyCatalog":
        """Build from the answers of :data:`CATALOG_DOMAINS_QUERY` and, per domain found,
        :func:`catalog_entities_query` (InfluxDB's JSON series: name, columns, values).
        """
        domains: dict[str, list[str]] = {}
        for series in domain_series:
            domains[str(series["name"])] = [str(row[1]) for row in series.get("values") or ()]
        entity_ids: dict[str, set[str]] = {}
        for domain, series_list in entity_series.items():
            for series in series_list:
                known = entity_ids.setdefault(str(series["name"]), set())
                known.update(f"{domain}.{row[1]}" for row in series.get("values") or ())
        return cls.from_tag_values(domains, None, entity_ids)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, read back by :meth:`from_dict`."""
        return {
            name: {
                "domains": sorted(contents.domains),
                "object_ids": sorted(contents.object_ids),
                "entity_ids": sorted(contents.entity_ids),
            }
            for name, contents in sorted(self.measurements.items())
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LegacyCatalog":
        """Read the form written by :meth:`as_dict`; ``TypeError``/``ValueError`` when malformed."""
        measurements: dict[str, MeasurementContents] = {}
        for name, contents in data.items():
            if not isinstance(contents, Mapping) or not isinstance(name, str):
                raise TypeError(f"catalog entry {name!r} must be an object")
            parts = {}
            for key in ("domains", "object_ids", "entity_ids"):
                values = contents.get(key, [])
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise ValueError(f"catalog entry {name!r}: {key} must be a list of text")
                parts[key] = frozenset(values)
            measurements[name] = MeasurementContents(
                parts["domains"], parts["object_ids"], parts["entity_ids"]
            )
        return cls(measurements)


# What a catalog is read with: the domains of every measurement, then per domain its entities.
CATALOG_DOMAINS_QUERY: Final = 'SHOW TAG VALUES WITH KEY = "domain"'


def catalog_entities_query(domain: str) -> str:
    """The query listing, per measurement, the object ids of one domain's entities."""
    return f'SHOW TAG VALUES WITH KEY = "entity_id" WHERE "domain" = {quote_string(domain)}'
