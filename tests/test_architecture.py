"""The import rule: the core of the integration never imports Home Assistant.

The core (InfluxDB clients, line protocol, the migration engine and its model, delivery, the
generator, the translators) runs and is tested without Home Assistant; the glue modules adapt
it to Home Assistant. Which side a module is on is read from the code's imports, directly and
through the package's own modules, so a core module that starts importing ``homeassistant``
(or a glue module) fails here, as does a new module that is on neither list.
"""

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "custom_components" / "ha_ingestor"

# Free of Home Assistant, through every module they import.
CORE = frozenset(
    {
        "const",
        "generator",
        "influx",
        "influx._stream",
        "influx.errors",
        "influx.v1",
        "influx.v2",
        "influxql",
        "line_protocol",
        "migration_engine",
        "migration_ledger",
        "migration_model",
        "retry",
        "rollups",
        "spool",
        "writer",
    }
)
# Adapting the core to Home Assistant (or, for the two layouts, built on HA's State and its
# state_as_number, which core's influxdb integration uses: the point must be the one core writes).
GLUE = frozenset(
    {
        "",
        "binary_sensor",
        "config_flow",
        "connection",
        "core_influxdb",
        "dashboard_translation",
        "diagnostics",
        "entity",
        "ingest",
        "legacy_catalog",
        "legacy_layout",
        "migration",
        "optimized_layout",
        "query_translation",
        "rehearsal",
        "repairs",
        "sensor",
        "services",
    }
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str) -> tuple[bool, frozenset[str]]:
    """Whether a module imports homeassistant itself, and the package modules it imports."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if not name:
        package = []
    direct = False
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            direct |= any(alias.name.split(".")[0] == "homeassistant" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            direct |= (node.module or "").split(".")[0] == "homeassistant"
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # from . import name: a module of the package, or a name of its __init__
                for alias in node.names:
                    candidate = ".".join([*base, alias.name])
                    found.add(candidate if candidate in MODULES else ".".join(base))
    return direct, frozenset(found)


@cache
def uses_home_assistant(name: str) -> bool:
    """Whether a module reaches homeassistant, itself or through the package's modules."""
    seen = {name}
    todo = [name]
    while todo:
        direct, found = imports(todo.pop())
        if direct:
            return True
        todo += found - seen
        seen |= found
    return False


def test_every_module_is_core_or_glue() -> None:
    assert set(MODULES) == CORE | GLUE
    assert not CORE & GLUE


def test_the_core_never_imports_home_assistant() -> None:
    offenders = {name for name in CORE if uses_home_assistant(name)}
    assert offenders == set()


def test_the_rule_sees_an_import_through_the_package() -> None:
    # The glue list is not just "the rest": each of its modules does reach Home Assistant.
    assert {name for name in GLUE if not uses_home_assistant(name)} == set()
