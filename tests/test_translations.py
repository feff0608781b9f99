"""strings.json and translations/en.json keep to hassfest's rules for translation keys, and
every option a translated selector offers has its translation.

hassfest (HA core's script/hassfest/translations.py) applies its key rule to selector options,
entity and state keys, service fields and more; every key of our files meets it, so this
checks all of them.
"""

from collections.abc import Iterator
import json
from pathlib import Path
import re
from typing import Any

import pytest

import custom_components.ha_ingestor
from custom_components.ha_ingestor.config_flow import _options_schema
from custom_components.ha_ingestor.const import MEASUREMENT_ATTR_CHOICES

BASE = Path(custom_components.ha_ingestor.__file__).parent
FILES = ["strings.json", "translations/en.json"]


def is_translation_key(key: str) -> bool:
    """hassfest's rule: lowercase letters, digits, ``-`` and ``_``; no ``-``/``_`` at either
    end, and never two of them in a row (``__``, ``--``, ``_-``, ``-_``)."""
    return (
        re.fullmatch(r"[a-z0-9_-]+", key) is not None
        and key[0] not in "_-"
        and key[-1] not in "_-"
        and re.search(r"[_-]{2}", key) is None
    )


def keys(tree: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for key, value in tree.items():
        yield f"{path}{key}", key
        if isinstance(value, dict):
            yield from keys(value, f"{path}{key}.")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("domain_device_class", True),
        ("unit_of_measurement", True),
        ("dual-write", True),
        ("x1", True),
        ("domain__device_class", False),
        ("a_-b", False),
        ("_leading", False),
        ("trailing-", False),
        ("Upper", False),
        ("with space", False),
        ("°c", False),
    ],
)
def test_key_rule_matches_hassfest(key: str, valid: bool) -> None:
    assert is_translation_key(key) is valid


@pytest.mark.parametrize("name", FILES)
def test_every_translation_key_meets_hassfest_rule(name: str) -> None:
    tree = json.loads((BASE / name).read_text())
    invalid = [path for path, key in keys(tree) if not is_translation_key(key)]
    assert invalid == []


def test_every_measurement_attr_option_is_translated() -> None:
    strings = json.loads((BASE / "strings.json").read_text())
    translated = strings["selector"]["measurement_attr"]["options"]
    legacy_schema = _options_schema({}).schema["legacy_layout"].schema.schema
    (selector,) = (
        value for key, value in legacy_schema.items() if key.schema == "measurement_attr"
    )
    offered = selector.config["options"]
    assert set(offered) == set(translated)
    assert len(offered) == len(MEASUREMENT_ATTR_CHOICES)
