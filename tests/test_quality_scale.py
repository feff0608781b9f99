"""quality_scale.yaml states every rule of HA's integration quality scale, each done, exempt
with a reason or todo with a reason, and the README claims the level those statuses reach."""

from pathlib import Path

import yaml

import custom_components.ha_ingestor

ROOT = Path(custom_components.ha_ingestor.__file__).parent
TIERS = {
    "bronze": {
        "action-setup", "appropriate-polling", "brands", "common-modules",
        "config-flow-test-coverage", "config-flow", "dependency-transparency", "docs-actions",
        "docs-conditions", "docs-high-level-description", "docs-installation-instructions",
        "docs-removal-instructions", "docs-triggers", "entity-event-setup", "entity-unique-id",
        "has-entity-name", "runtime-data", "test-before-configure", "test-before-setup",
        "unique-config-entry",
    },
    "silver": {
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
        "docs-installation-parameters", "entity-unavailable", "integration-owner",
        "log-when-unavailable", "parallel-updates", "reauthentication-flow", "test-coverage",
    },
    "gold": {
        "devices", "diagnostics", "discovery-update-info", "discovery", "docs-data-update",
        "docs-examples", "docs-known-limitations", "docs-supported-devices",
        "docs-supported-functions", "docs-troubleshooting", "docs-use-cases", "dynamic-devices",
        "entity-category", "entity-device-class", "entity-disabled-by-default",
        "entity-translations", "exception-translations", "icon-translations",
        "reconfiguration-flow", "repair-issues", "stale-devices",
    },
    "platinum": {"async-dependency", "inject-websession", "strict-typing"},
}  # fmt: skip
RULES = yaml.safe_load((ROOT / "quality_scale.yaml").read_text())["rules"]


def status(rule: str) -> str:
    value = RULES[rule]
    return value if isinstance(value, str) else value["status"]


def test_every_rule_is_stated_once() -> None:
    assert set(RULES) == set().union(*TIERS.values())


def test_exempt_and_todo_rules_say_why() -> None:
    for rule, value in RULES.items():
        assert status(rule) in {"done", "exempt", "todo"}, rule
        if status(rule) != "done":
            assert isinstance(value, dict), rule
            assert value.get("comment"), rule


def test_the_readme_claims_the_level_the_rules_reach() -> None:
    reached = "none"
    for tier, rules in TIERS.items():
        if any(status(rule) == "todo" for rule in rules):
            break
        reached = tier
    readme = (ROOT.parent.parent / "README.md").read_text()
    assert f"**Quality scale: {reached.capitalize()}**" in readme
