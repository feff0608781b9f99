"""The brand images HA 2026.3+ shows for a custom integration (drawn by scripts/brand.py), held
to the brands repository's image rules: PNG with transparency, trimmed, icons square at
256/512 pixels, logos with the shortest side within 128 to 256 (256 to 512 for @2x)."""

from pathlib import Path

from PIL import Image
import pytest

import custom_components.ha_ingestor

BRAND = Path(custom_components.ha_ingestor.__file__).parent / "brand"
VARIANTS = ["", "dark_"]


def open_png(name: str) -> Image.Image:
    image = Image.open(BRAND / name)
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    return image


def test_the_folder_holds_exactly_the_supported_names() -> None:
    names = {
        f"{variant}{kind}{scale}.png"
        for variant in VARIANTS
        for kind in ("icon", "logo")
        for scale in ("", "@2x")
    }
    assert {path.name for path in BRAND.iterdir()} == names


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("scale", "size"), [("", 256), ("@2x", 512)])
def test_icons_are_square_transparent_and_fill_their_square(
    variant: str, scale: str, size: int
) -> None:
    icon = open_png(f"{variant}icon{scale}.png")
    assert icon.size == (size, size)
    alpha = icon.getchannel("A")
    assert alpha.getextrema()[0] == 0  # a transparent background
    left, top, right, bottom = alpha.getbbox()
    # Trimmed: the drawing reaches both edges of its longer side.
    assert (left, right) == (0, size) or (top, bottom) == (0, size)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("scale", "shortest"), [("", (128, 256)), ("@2x", (256, 512))])
def test_logos_are_landscape_transparent_and_trimmed(
    variant: str, scale: str, shortest: tuple[int, int]
) -> None:
    logo = open_png(f"{variant}logo{scale}.png")
    assert logo.width > logo.height
    assert shortest[0] <= logo.height <= shortest[1]
    alpha = logo.getchannel("A")
    assert alpha.getextrema()[0] == 0
    assert alpha.getbbox() == (0, 0, logo.width, logo.height)


@pytest.mark.parametrize("name", ["icon", "logo"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_hdpi_image_is_twice_the_size(variant: str, name: str) -> None:
    single = open_png(f"{variant}{name}.png")
    double = open_png(f"{variant}{name}@2x.png")
    assert double.height == 2 * single.height
    assert abs(double.width - 2 * single.width) <= 1
