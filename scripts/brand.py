"""Draw the brand images HA 2026.3+ shows for a custom integration (its brand/ folder).

    .venv/bin/python scripts/brand.py

Writes icon.png, icon@2x.png, logo.png, logo@2x.png and their dark_ variants into
custom_components/ha_ingestor/brand/, following the brands repository's rules: PNG with
transparency, trimmed; icons square at 256 and 512 pixels; logos landscape with the shortest
side at its largest allowed size (256, and 512 for @2x). The picture: a database that state
changes flow into, in Home Assistant's blue, beside the name.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
BRAND = ROOT / "custom_components" / "ha_ingestor" / "brand"

# Drawn large and scaled down, so the edges come out smooth.
CANVAS = 2048
BLUE = (3, 169, 244, 255)  # Home Assistant's primary colour
DEEP = (2, 119, 189, 255)
THEMES = {
    "": {"body": BLUE, "band": DEEP, "flow": (0, 150, 136, 255), "text": (33, 33, 33, 255)},
    "dark_": {
        "body": (41, 182, 246, 255),
        "band": (179, 229, 252, 255),
        "flow": (77, 208, 196, 255),
        "text": (241, 241, 241, 255),
    },
}


def draw_mark(colours: dict[str, tuple[int, int, int, int]]) -> Image.Image:
    """The database with three points flowing into it, trimmed to what is drawn."""
    image = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    left, right = 760, 1900
    top, bottom = 260, 1790
    rim = 300  # height of the ellipses that make the cylinder's ends
    draw.rectangle((left, top + rim // 2, right, bottom - rim // 2), fill=colours["body"])
    draw.ellipse((left, bottom - rim, right, bottom), fill=colours["body"])
    # Bands: the layers of a time-series store.
    for y in (top + 560, top + 1000):
        draw.arc((left, y - rim, right, y), 0, 180, fill=colours["band"], width=70)
    draw.ellipse((left, top, right, top + rim), fill=colours["band"])
    draw.ellipse((left + 60, top + 40, right - 60, top + rim - 40), fill=colours["body"])
    # State changes arriving: three dots and an arrow head pointing into the store.
    middle = (top + bottom) // 2 + 80
    for x, radius in ((150, 80), (370, 105), (600, 130)):
        draw.ellipse(
            (x - radius, middle - radius, x + radius, middle + radius), fill=colours["flow"]
        )
    draw.polygon(((760, middle - 230), (1080, middle), (760, middle + 230)), fill=colours["flow"])
    return image.crop(image.getbbox())


def square(mark: Image.Image, size: int) -> Image.Image:
    """The mark centred on a transparent square, touching two of its edges."""
    side = max(mark.size)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(mark, ((side - mark.width) // 2, (side - mark.height) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def logo(mark: Image.Image, text_colour: tuple[int, int, int, int], height: int) -> Image.Image:
    """The mark and the name side by side, trimmed, scaled to ``height`` pixels high."""
    font = ImageFont.load_default(size=900)
    text = "HA Ingestor"
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    text_box = probe.textbbox((0, 0), text, font=font, stroke_width=18)
    text_width, text_height = text_box[2] - text_box[0], text_box[3] - text_box[1]
    gap = mark.height // 5
    canvas = Image.new(
        "RGBA", (mark.width + gap + text_width, max(mark.height, text_height)), (0, 0, 0, 0)
    )
    canvas.paste(mark, (0, (canvas.height - mark.height) // 2))
    ImageDraw.Draw(canvas).text(
        (mark.width + gap - text_box[0], (canvas.height - text_height) // 2 - text_box[1]),
        text,
        font=font,
        fill=text_colour,
        stroke_width=18,
        stroke_fill=text_colour,
    )
    canvas = canvas.crop(canvas.getbbox())
    width = round(canvas.width * height / canvas.height)
    return canvas.resize((width, height), Image.Resampling.LANCZOS)


def main() -> None:
    BRAND.mkdir(exist_ok=True)
    for prefix, colours in THEMES.items():
        mark = draw_mark(colours)
        images = {
            "icon.png": square(mark, 256),
            "icon@2x.png": square(mark, 512),
            "logo.png": logo(mark, colours["text"], 256),
            "logo@2x.png": logo(mark, colours["text"], 512),
        }
        for name, image in images.items():
            path = BRAND / f"{prefix}{name}"
            image.save(path, optimize=True)
            print(f"{path.relative_to(ROOT)}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
