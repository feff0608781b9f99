"""The import rule: ``engine/`` never imports Home Assistant, nor the glue around it.

The engine (InfluxDB clients, line protocol, delivery, rollups, the generator, the migration's
model, ledger and work) runs and is tested without Home Assistant; the modules around it adapt
it to Home Assistant. The rule is read from the code's imports, directly and through the
package's own modules, so an engine module that starts importing ``homeassistant`` (or a glue
module that does) fails here.
"""

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "custom_components" / "ha_ingestor"


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


ENGINE = frozenset(name for name in MODULES if name == "engine" or name.startswith("engine."))


def test_the_engine_never_imports_home_assistant() -> None:
    assert len(ENGINE) > 10
    offenders = {name for name in ENGINE if uses_home_assistant(name)}
    assert offenders == set()


def test_the_engine_imports_nothing_of_the_glue() -> None:
    reaching_out = {
        (name, module) for name in ENGINE for module in imports(name)[1] if module not in ENGINE
    }
    assert reaching_out == set()


def test_the_rule_sees_an_import_through_the_package() -> None:
    # What the rule reads: the glue that imports an engine module and HA is seen as HA; the
    # layouts reach HA only through their own imports of HA helpers.
    assert uses_home_assistant("recording")
    assert uses_home_assistant("translation.query")  # through the layouts
    assert not uses_home_assistant("const")
