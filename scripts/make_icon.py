"""Draw the plugin icon (a magnifier over a tile grid) as resources/icons/rsitr.png and .svg."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect x="2" y="2" width="60" height="60" rx="6" fill="#2f5d3a"/>
<g stroke="#cfe3c2" stroke-width="1.5" fill="none">
<path d="M2 22H62M2 42H62M22 2V62M42 2V62"/></g>
<rect x="22" y="22" width="20" height="20" fill="#f2c230" fill-opacity="0.85"/>
<circle cx="30" cy="30" r="13" stroke="#ffffff" stroke-width="5" fill="none"/>
<path d="M39 39L55 55" stroke="#ffffff" stroke-width="7" stroke-linecap="round"/>
</svg>
"""


def draw_png(size: int = 64) -> Image.Image:
    """Rasterise the same design with Pillow (no SVG renderer needed)."""
    s = size / 64
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2 * s, 2 * s, 62 * s, 62 * s], radius=6 * s, fill=(47, 93, 58, 255))
    for v in (22, 42):
        d.line([(2 * s, v * s), (62 * s, v * s)], fill=(207, 227, 194, 255), width=max(1, round(1.5 * s)))
        d.line([(v * s, 2 * s), (v * s, 62 * s)], fill=(207, 227, 194, 255), width=max(1, round(1.5 * s)))
    d.rectangle([22 * s, 22 * s, 42 * s, 42 * s], fill=(242, 194, 48, 220))
    d.ellipse([17 * s, 17 * s, 43 * s, 43 * s], outline=(255, 255, 255, 255), width=round(5 * s))
    d.line([(39 * s, 39 * s), (55 * s, 55 * s)], fill=(255, 255, 255, 255), width=round(7 * s))
    return img


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rsitr.svg").write_text(SVG)
    draw_png().save(OUT / "rsitr.png")
    print(f"wrote {OUT / 'rsitr.png'} and {OUT / 'rsitr.svg'}")
