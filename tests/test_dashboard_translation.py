"""Grafana dashboards: every InfluxQL query found and translated, the rest of the JSON kept."""

import copy
import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest

from custom_components.ha_ingestor.layouts.legacy import LegacyOptions
from custom_components.ha_ingestor.layouts.optimized import OptimizedOptions
from custom_components.ha_ingestor.translation.dashboard import (
    DashboardTranslator,
    Outcome,
    render_builder_query,
)
from custom_components.ha_ingestor.translation.query import LegacyCatalog, QueryTranslator

from .influx_server import ADMIN_PASSWORD, ADMIN_USER, InfluxServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "grafana_legacy_dashboard.json"
CATALOG = LegacyCatalog.from_tag_values(
    {"°C": ["sensor"], "%": ["sensor", "input_number"], "W": ["sensor"], "kWh": ["sensor"]},
    {
        "°C": ["kitchen_temperature", "office_temperature"],
        "%": ["kitchen_humidity", "fan_speed"],
        "W": ["fridge_power"],
        "kWh": ["oven_energy"],
    },
)


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(FIXTURE.read_text(encoding="utf-8")))


def _translated() -> tuple[dict[str, Any], Any]:
    translator = DashboardTranslator(QueryTranslator(LegacyOptions(), OptimizedOptions(), CATALOG))
    result = translator.translate(_dashboard())
    return result.dashboard, result


def _panel(dashboard: dict[str, Any], panel_id: int) -> dict[str, Any]:
    def walk(panels: list[dict[str, Any]]) -> dict[str, Any] | None:
        for panel in panels:
            if panel.get("id") == panel_id:
                return panel
            if (found := walk(panel.get("panels") or [])) is not None:
                return found
        return None

    found = walk(dashboard["panels"])
    assert found is not None
    return found


# Grafana's own expectations for its visual editor (influx_query_model tests).
@pytest.mark.parametrize(
    ("target", "query"),
    [
        (
            {"measurement": "cpu", "policy": "autogen"},
            'SELECT mean("value") FROM "autogen"."cpu" WHERE $timeFilter '
            "GROUP BY time($__interval) fill(null)",
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "select": [
                    [
                        {"type": "field", "params": ["value"]},
                        {"type": "mean", "params": []},
                        {"type": "math", "params": ["/100"]},
                        {"type": "alias", "params": ["text"]},
                    ]
                ],
            },
            'SELECT mean("value") /100 AS "text" FROM "autogen"."cpu" WHERE $timeFilter '
            "GROUP BY time($__interval) fill(null)",
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "groupBy": [{"type": "time", "params": ["auto"]}],
                "tags": [{"key": "hostname", "value": "server\\1"}],
            },
            'SELECT mean("value") FROM "autogen"."cpu" WHERE ("hostname" = \'server\\\\1\') '
            "AND $timeFilter GROUP BY time($__interval)",
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "groupBy": [{"type": "time", "params": ["auto"]}],
                "tags": [{"key": "app", "value": "/e.*/"}],
            },
            'SELECT mean("value") FROM "autogen"."cpu" WHERE ("app" =~ /e.*/) AND $timeFilter '
            "GROUP BY time($__interval)",
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "groupBy": [{"type": "time", "params": ["auto"]}],
                "tags": [
                    {"key": "name", "value": "Let's encrypt."},
                    {"key": "hostname", "value": "server2", "condition": "OR"},
                ],
            },
            'SELECT mean("value") FROM "autogen"."cpu" WHERE ("name" = \'Let\\\'s encrypt.\' '
            "OR \"hostname\" = 'server2') AND $timeFilter GROUP BY time($__interval)",
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "groupBy": [],
                "tags": [{"key": "value", "value": "5", "operator": ">"}],
            },
            'SELECT mean("value") FROM "autogen"."cpu" WHERE ("value" > 5) AND $timeFilter',
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "tags": [],
                "groupBy": [
                    {"type": "time", "interval": "auto"},
                    {"type": "tag", "params": ["host"]},
                ],
            },
            'SELECT mean("value") FROM "autogen"."cpu" WHERE $timeFilter '
            'GROUP BY time($__interval), "host"',
        ),
        (
            {
                "measurement": "cpu",
                "policy": "autogen",
                "select": [[{"type": "field", "params": ["value"]}]],
                "groupBy": [{"type": "time"}, {"type": "fill", "params": ["0"]}],
            },
            'SELECT "value" FROM "autogen"."cpu" WHERE $timeFilter '
            "GROUP BY time($__interval) fill(0)",
        ),
        (
            {
                "measurement": "W",
                "select": [[{"type": "field", "params": ["value"]}, {"type": "last"}]],
                "groupBy": [],
                "orderByTime": "DESC",
                "limit": "5",
                "tz": "UTC",
            },
            'SELECT last("value") FROM "W" WHERE $timeFilter '
            "ORDER BY time DESC LIMIT 5 tz('UTC')",
        ),
    ],
)
def test_visual_editor_queries_render_as_grafana_sends_them(
    target: dict[str, Any], query: str
) -> None:
    assert render_builder_query(target) == query


def test_every_influxql_query_is_translated_or_reported() -> None:
    _, result = _translated()
    outcomes = {report.location: report.outcome for report in result.reports}
    assert outcomes == {
        "variable $entity": Outcome.TRANSLATED,
        "panel 1 'Temperature ($entity)' target A": Outcome.TRANSLATED,
        "panel 2 'Kitchen (visual editor)' target A": Outcome.TRANSLATED,
        "panel 3 'Power now' target A": Outcome.TRANSLATED,
        "panel 4 'Kitchen humidity' target A": Outcome.TRANSLATED,
        "panel 6 'Energy per day' target A": Outcome.TRANSLATED,
        "panel 6 'Energy per day' target B": Outcome.SKIPPED,
        "panel 7 'Climate' > panel 8 'Latest per sensor' target A": Outcome.TRANSLATED,
        "panel 7 'Climate' > panel 9 'Heating' target A": Outcome.REFUSED,
        "panel 7 'Climate' > panel 10 'Basement climate' target A": Outcome.TRANSLATED,
        "annotation 'Front door opened'": Outcome.TRANSLATED,
    }
    assert not result.complete
    (refused,) = [report for report in result.reports if report.outcome is Outcome.REFUSED]
    assert "hvac_action_str" in refused.warnings[0]
    assert refused.after == refused.before


def test_the_entity_variable_lists_full_ids_and_panels_keep_using_it() -> None:
    dashboard, _ = _translated()
    variable = dashboard["templating"]["list"][0]
    assert (
        variable["query"]
        == variable["definition"]
        == (
            'SHOW TAG VALUES FROM "sensor" WITH KEY = "entity_id" '
            "WHERE \"unit_of_measurement\" = '°C'"
        )
    )
    assert variable["current"] == {}
    assert variable["options"] == []
    assert "/^$entity$/" in _panel(dashboard, 1)["targets"][0]["query"]


def test_visual_editor_targets_become_raw_queries() -> None:
    dashboard, result = _translated()
    target = _panel(dashboard, 2)["targets"][0]
    assert target["rawQuery"] is True
    assert target["query"] == (
        'SELECT mean("value") FROM "sensor" WHERE "unit_of_measurement" = \'°C\' AND '
        "(\"entity_id\" = 'sensor.kitchen_temperature') AND $timeFilter "
        "GROUP BY time($__interval) fill(null)"
    )
    # The editor's fields stay, so switching back to the editor shows the old query.
    assert target["measurement"] == "°C"
    report = next(r for r in result.reports if r.location.startswith("panel 2 "))
    assert "visual editor query converted to a raw query" in report.changes
    assert any("$measurement" in change for change in report.changes)


def test_nothing_but_the_queries_changes() -> None:
    original = _dashboard()
    dashboard, _ = _translated()
    restored = copy.deepcopy(dashboard)
    for panel_id in (1, 2, 3, 4, 6, 8, 10):
        for before, after in zip(
            _panel(original, panel_id)["targets"],
            _panel(restored, panel_id)["targets"],
            strict=True,
        ):
            after["query"] = before.get("query")
            if "rawQuery" not in before:
                after.pop("rawQuery", None)
            else:
                after["rawQuery"] = before["rawQuery"]
            if after.get("query") is None:
                after.pop("query")
    restored["annotations"] = original["annotations"]
    restored["templating"]["list"][0] = original["templating"]["list"][0]
    assert restored == original


def test_refused_and_foreign_targets_are_byte_identical() -> None:
    original = _dashboard()
    dashboard, _ = _translated()
    assert _panel(dashboard, 9) == _panel(original, 9)
    assert _panel(dashboard, 6)["targets"][1] == _panel(original, 6)["targets"][1]
    assert _panel(dashboard, 11) == _panel(original, 11)
    assert dashboard["templating"]["list"][1:] == original["templating"]["list"][1:]


def test_old_style_rows_are_walked() -> None:
    board = {
        "rows": [
            {
                "title": "Old",
                "panels": [
                    {
                        "id": 1,
                        "title": "Graph",
                        "targets": [
                            {"refId": "A", "rawQuery": True, "query": 'SELECT last(value) FROM "W"'}
                        ],
                    }
                ],
            }
        ]
    }
    result = DashboardTranslator(
        QueryTranslator(LegacyOptions(), OptimizedOptions(), CATALOG)
    ).translate({"dashboard": board, "meta": {}})
    (report,) = result.reports
    assert report.location == "row 0 'Old' > panel 1 'Graph' target A"
    assert result.dashboard["dashboard"]["rows"][0]["panels"][0]["targets"][0]["query"] == (
        'SELECT last(value) FROM "sensor" WHERE "unit_of_measurement" = \'W\''
    )


def test_unparsable_and_flux_queries_are_reported() -> None:
    board = {
        "panels": [
            {
                "id": 1,
                "title": "x",
                "targets": [
                    {"refId": "A", "rawQuery": True, "query": "SELECT FROM oops"},
                    {"refId": "B", "query": 'from(bucket: "ha") |> range(start: -1h)'},
                ],
            }
        ]
    }
    result = DashboardTranslator(
        QueryTranslator(LegacyOptions(), OptimizedOptions(), CATALOG)
    ).translate(board)
    first, second = result.reports
    assert first.outcome is Outcome.REFUSED
    assert "not InfluxQL" in first.warnings[0]
    assert second.outcome is Outcome.SKIPPED


def test_the_command_writes_the_dashboard_and_reports(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG.as_dict()), encoding="utf-8")
    options = tmp_path / "legacy.yaml"
    options.write_text("influxdb:\n  measurement_attr: unit_of_measurement\n", encoding="utf-8")
    output, report = tmp_path / "out.json", tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "translate_dashboard.py"),
            str(FIXTURE),
            "-o",
            str(output),
            "--options",
            str(options),
            "--catalog",
            str(catalog),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # One query (the hvac_action_str timeline) is left as it was: exit status 1.
    assert completed.returncode == 1, completed.stderr
    assert "9 translated, 0 unchanged, 1 refused, 1 skipped" in completed.stderr
    assert json.loads(output.read_text(encoding="utf-8")) == _translated()[0]
    assert len(json.loads(report.read_text(encoding="utf-8"))) == 11


def test_the_command_rejects_bad_options(tmp_path: Path) -> None:
    options = tmp_path / "legacy.json"
    options.write_text('{"measurement_attr": 5, "tags": "no"}', encoding="utf-8")
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "translate_dashboard.py"),
            str(FIXTURE),
            "--options",
            str(options),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "translate-dashboard:" in completed.stderr


def test_the_command_reads_the_catalog_from_influxdb(
    tmp_path: Path, influxd: InfluxServer, database: str
) -> None:
    influxd.write(
        "\n".join(
            [
                "°C,domain=sensor,entity_id=kitchen_temperature value=21 1704067200000000000",
                "%,domain=sensor,entity_id=kitchen_humidity value=40 1704067200000000000",
                "%,domain=input_number,entity_id=fan_speed value=50 1704067200000000000",
                "W,domain=sensor,entity_id=fridge_power value=80 1704067200000000000",
                "kWh,domain=sensor,entity_id=oven_energy value=3 1704067200000000000",
            ]
        ),
        database,
    )
    catalog = tmp_path / "catalog.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "translate_dashboard.py"),
            str(FIXTURE),
            "-o",
            str(tmp_path / "out.json"),
            "--influx-url",
            influxd.url,
            "--database",
            database,
            "--username",
            ADMIN_USER,
            "--password",
            ADMIN_PASSWORD,
            "--write-catalog",
            str(catalog),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "9 translated" in completed.stderr, completed.stderr
    written = LegacyCatalog.from_dict(json.loads(catalog.read_text(encoding="utf-8")))
    assert written.measurements["%"].entity_ids == {
        "sensor.kitchen_humidity",
        "input_number.fan_speed",
    }
