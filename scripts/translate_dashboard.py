"""Translate an exported Grafana dashboard from the legacy layout to the optimized layout.

    scripts/translate-dashboard home.json -o home-optimized.json \\
        --options legacy.yaml --influx-url http://localhost:8086 --database home_assistant

Reads the dashboard JSON (Grafana's "Export > Save to file", with or without "Export for
sharing externally"), translates every InfluxQL query (panels, rows, annotations, variables)
with the legacy options core's influxdb integration wrote the data with, writes the result
and prints what changed and what was left alone. ``--options`` is a JSON or YAML file with
core's keys (measurement_attr, default_measurement, override_measurement, tags,
tags_attributes, ignore_attributes, component_config…); ``--allowlist`` the optimized
layout's attribute allow-list as in the options flow (``name`` or ``name:str``).

Which domains a legacy measurement such as ``%`` holds is read from the legacy database
(``--influx-url``/``--database``, InfluxDB 1.x) or from a catalog file written earlier with
``--write-catalog``; without either, only queries that name the domain are translated.

Exit status: 0 when every InfluxQL query was translated exactly, 1 when some were left as
they were (the output is still written), 2 for bad input.
"""

import argparse
import base64
import json
from pathlib import Path
import sys
from typing import Any
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import voluptuous as vol  # noqa: E402
import yaml  # noqa: E402

from custom_components.ha_ingestor.layouts.legacy import LegacyOptions  # noqa: E402
from custom_components.ha_ingestor.layouts.optimized import (  # noqa: E402
    DEFAULT_ALLOWED_ATTRIBUTES,
    OptimizedOptions,
)
from custom_components.ha_ingestor.translation.dashboard import (  # noqa: E402
    DashboardTranslator,
    Outcome,
)
from custom_components.ha_ingestor.translation.query import (  # noqa: E402
    CATALOG_DOMAINS_QUERY,
    LegacyCatalog,
    QueryTranslator,
    catalog_entities_query,
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Translate a Grafana dashboard's InfluxQL to the optimized layout."
    )
    parser.add_argument("dashboard", type=Path, help="exported dashboard JSON")
    parser.add_argument("-o", "--output", type=Path, help="where to write (default: stdout)")
    parser.add_argument("--options", type=Path, help="legacy layout options (JSON or YAML)")
    parser.add_argument(
        "--allowlist", help="optimized attribute allow-list: name or name:str, comma separated"
    )
    parser.add_argument("--catalog", type=Path, help="catalog JSON written by --write-catalog")
    parser.add_argument("--influx-url", help="InfluxDB 1.x URL to read the catalog from")
    parser.add_argument("--database", help="the legacy database (with --influx-url)")
    parser.add_argument("--username", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--write-catalog", type=Path, help="save the catalog read from InfluxDB")
    parser.add_argument(
        "--entity-variable",
        action="append",
        default=[],
        help="a template variable (without $) that already lists full entity ids",
    )
    parser.add_argument("--report", type=Path, help="write the per-query report as JSON")
    return parser.parse_args(argv)


def _options(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise TypeError(f"{path}: expected a mapping of options")
    # An influxdb: block copied from configuration.yaml works as is.
    return dict(loaded.get("influxdb", loaded))


def _allowlist(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    allowed = {}
    for item in text.split(","):
        name, _, kind = item.strip().partition(":")
        default = DEFAULT_ALLOWED_ATTRIBUTES.get(name, float).__name__
        allowed[name.strip()] = kind.strip().lower() or default
    return allowed


def _query(url: str, database: str, query: str, username: str, password: str) -> list[Any]:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/query",
        data=urllib.parse.urlencode({"db": database, "q": query}).encode(),
    )
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    result = body.get("results", [{}])[0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB: {result['error']}")
    return list(result.get("series", []))


def _read_catalog(arguments: argparse.Namespace) -> LegacyCatalog | None:
    if arguments.catalog is not None:
        return LegacyCatalog.from_dict(json.loads(arguments.catalog.read_text(encoding="utf-8")))
    if not arguments.influx_url:
        return None
    if not arguments.database:
        raise ValueError("--influx-url needs --database")

    def query(text: str) -> list[Any]:
        return _query(
            arguments.influx_url, arguments.database, text, arguments.username, arguments.password
        )

    domain_series = query(CATALOG_DOMAINS_QUERY)
    domains = sorted({str(row[1]) for series in domain_series for row in series["values"]})
    entities = {domain: query(catalog_entities_query(domain)) for domain in domains}
    catalog = LegacyCatalog.from_series(domain_series, entities)
    if arguments.write_catalog is not None:
        arguments.write_catalog.write_text(
            json.dumps(catalog.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return catalog


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        options = _options(arguments.options)
        allowed = _allowlist(arguments.allowlist)
        optimized_input = dict(options)
        if allowed is not None:
            optimized_input["allowed_attributes"] = allowed
        legacy = LegacyOptions.from_options(options)
        optimized = OptimizedOptions.from_options(optimized_input)
        dashboard = json.loads(arguments.dashboard.read_text(encoding="utf-8"))
        catalog = _read_catalog(arguments)
    except (OSError, ValueError, TypeError, RuntimeError, vol.Invalid) as err:
        print(f"translate-dashboard: {err}", file=sys.stderr)
        return 2
    if not isinstance(dashboard, dict):
        print("translate-dashboard: the file is not a dashboard object", file=sys.stderr)
        return 2

    translator = QueryTranslator(legacy, optimized, catalog, arguments.entity_variable)
    result = DashboardTranslator(translator).translate(dashboard)
    text = json.dumps(result.dashboard, indent=2, ensure_ascii=False) + "\n"
    if arguments.output is None:
        sys.stdout.write(text)
    else:
        arguments.output.write_text(text, encoding="utf-8")
    if arguments.report is not None:
        arguments.report.write_text(
            json.dumps(
                [report.as_dict() for report in result.reports], indent=2, ensure_ascii=False
            )
            + "\n",
            encoding="utf-8",
        )

    for report in result.reports:
        print(f"{report.outcome.value:>10}  {report.location}", file=sys.stderr)
        if report.outcome is Outcome.TRANSLATED:
            print(f"            {report.after}", file=sys.stderr)
        for line in (*report.changes, *report.warnings):
            print(f"            - {line}", file=sys.stderr)
    summary = ", ".join(f"{result.count(outcome)} {outcome.value}" for outcome in Outcome)
    print(f"translate-dashboard: {summary}", file=sys.stderr)
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
