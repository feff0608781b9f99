"""What a legacy field becomes in the optimized layout, selected or in a condition."""

from collections.abc import Mapping

from ..const import MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS
from ..engine.influxql import variables_in
from ..layouts.optimized import IDENTITY_ATTRIBUTES, attribute_text, identity_tag
from .layout_pair import DEVICE_CLASS, LayoutPair
from .rewrite import Refusal

# Written by both layouts for every point (time is InfluxDB's own).
_ALWAYS: tuple[str, ...] = ("value", "state")


def check_selected_field(layouts: LayoutPair, name: str) -> None:
    """Refuse selecting a field the optimized points lack or hold differently."""
    if name in (*_ALWAYS, "time"):
        return
    allowed = layouts.optimized.allowed_attributes
    if allowed.get(name) is float:
        return
    base = name.removesuffix("_str")
    if name.endswith("_str") and allowed.get(base) is str:
        raise Refusal(
            f"{name} → {base}: the optimized field leaves out the texts 'None' and '' "
            "(and numbers) that the legacy field holds when the attribute was unset, so "
            f"results can differ; query {base} on the optimized layout by hand"
        )
    if name.endswith("_str") and base in IDENTITY_ATTRIBUTES:
        raise Refusal(
            f"{name} is the tag {base} in the optimized layout; a tag cannot be "
            "aggregated or selected alone"
        )
    raise Refusal(missing_field(name, allowed))


def condition_field(layouts: LayoutPair, name: str, operator: str, text: str | None) -> str | None:
    """The optimized name for the field of ``name operator 'text'``: ``None`` when unchanged.

    ``text`` is the compared string, ``None`` when the value is not a string literal.
    """
    if name in _ALWAYS:
        return None
    allowed = layouts.optimized.allowed_attributes
    if allowed.get(name) is float:
        return None
    base = name.removesuffix("_str")
    if not name.endswith("_str") or not base:
        raise Refusal(missing_field(name, allowed))
    if allowed.get(base) is str:
        if operator == "=" and text is not None and not variables_in(text):
            if attribute_text(text) != text:
                raise Refusal(
                    f"the optimized field {base} never holds {text!r} (numbers, 'None' "
                    "and '' are left out)"
                )
            return base
        raise Refusal(
            f"{name} {operator} … would also match the texts 'None' and '' that the "
            f"optimized field {base} leaves out; only {name} = '…' is translated"
        )
    if base in IDENTITY_ATTRIBUTES:
        legacy = layouts.legacy
        names_measurement = base == legacy.measurement_attr or (
            base == DEVICE_CLASS and legacy.measurement_attr == MEASUREMENT_ATTR_DOMAIN_DEVICE_CLASS
        )
        if names_measurement and not legacy.override_measurement:
            if layouts.override_targets:
                raise Refusal(f"only entities with an override_measurement have a field {name}")
            raise Refusal(f"legacy points have no field {name}: {base} names the measurement")
        layouts.check_attribute_usable(base)
        if operator == "=" and text and not variables_in(text):
            if identity_tag(text) != text:
                raise Refusal(f"the {base} {text!r} is not kept as a tag as is")
            return base
        raise Refusal(
            f"{name} {operator} … also matches points without the attribute once {base} "
            f"is a tag; only {name} = '…' is translated"
        )
    raise Refusal(missing_field(name, allowed))


def missing_field(name: str, allowed: Mapping[str, type]) -> str:
    """Why ``name`` cannot be queried: it is not on the optimized allow-list."""
    listed = ", ".join(
        f"{attribute}_str→{attribute}" if kind is str else attribute
        for attribute, kind in sorted(allowed.items())
    )
    return (
        f"the field {name!r} is not in the optimized layout (it keeps value, state and the "
        f"allow-listed attributes: {listed}); add the attribute to the allow-list"
    )
