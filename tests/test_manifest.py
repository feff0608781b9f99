"""manifest.json's requirements are what requirements.txt says, and never an exact pin: HA
constrains packages such as aiofiles itself, and an exact pin would force a downgrade."""

from importlib.metadata import version
import json
from pathlib import Path

import homeassistant
from packaging.requirements import Requirement

import custom_components.ha_ingestor

ROOT = Path(custom_components.ha_ingestor.__file__).parent
MANIFEST = json.loads((ROOT / "manifest.json").read_text())


def test_requirements_txt_mirrors_the_manifest() -> None:
    lines = (ROOT.parent.parent / "requirements.txt").read_text().splitlines()
    listed = [line for line in lines if line.strip() and not line.startswith("#")]
    assert listed == MANIFEST["requirements"]


def test_no_requirement_is_an_exact_pin() -> None:
    for requirement in map(Requirement, MANIFEST["requirements"]):
        assert all(spec.operator not in ("==", "===") for spec in requirement.specifier)


def test_the_installed_version_of_each_requirement_satisfies_it() -> None:
    """On each test stack: the baseline pins the lower bound, the newer one the newest."""
    for requirement in map(Requirement, MANIFEST["requirements"]):
        assert requirement.specifier.contains(version(requirement.name))


def test_every_version_home_assistant_allows_from_its_minimum_up_is_accepted() -> None:
    """Where HA's package_constraints.txt names a package with a minimum, that minimum and
    later versions satisfy our requirement, so installing us never moves HA's choice."""
    constraints = Path(homeassistant.__file__).parent / "package_constraints.txt"
    bounds = {
        requirement.name.lower(): requirement.specifier
        for line in constraints.read_text().splitlines()
        if line.strip() and not line.startswith("#") and ">=" in line
        for requirement in [Requirement(line.split(";")[0])]
    }
    for requirement in map(Requirement, MANIFEST["requirements"]):
        constraint = bounds.get(requirement.name.lower())
        if constraint is None:
            continue
        (minimum,) = (spec.version for spec in constraint if spec.operator == ">=")
        assert requirement.specifier.contains(minimum)
        assert requirement.specifier.contains("999")
