"""Pictures a person checks at a glance: each photo annotated, and a contact sheet of the groups.

Annotated photo: every item boxed in its group's colour with the group number, every container
boxed in white with its number (`C1`, `C2`, …) and the colour of the group it receives; a
line from each item to its container shows the planned move. Contact sheet: one row per
group, its colour at the left, then the crops of its items.
"""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]
UNGROUPED = (200, 200, 200)


def colour(group: int | None) -> tuple[int, int, int]:
    return UNGROUPED if group is None or group < 0 else PALETTE[group % len(PALETTE)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple, font) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
    draw.text((x, y), text, fill=fill, font=font)


def annotate(image: Image.Image, items: Sequence[dict], containers: Sequence[dict]) -> Image.Image:
    """`items`: {"box", "group", "target"(container number or None)}; `containers`: {"box", "number",
    "group"(the group it receives or None)} — boxes in the photo's pixels."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    font = _font(max(10, round(max(out.size) / 45)))
    centre = {c["number"]: ((c["box"][0] + c["box"][2]) / 2, (c["box"][1] + c["box"][3]) / 2) for c in containers}
    for item in items:
        x0, y0, x1, y1 = item["box"]
        target = item.get("target")
        if target in centre:
            draw.line([((x0 + x1) / 2, (y0 + y1) / 2), centre[target]], fill=colour(item["group"]),
                      width=max(1, width // 2))
    for c in containers:
        draw.rectangle(c["box"], outline=(255, 255, 255), width=width + 1)
        if c.get("group") is not None:
            draw.rectangle([c["box"][0] + width + 1, c["box"][1] + width + 1, c["box"][2] - width - 1,
                            c["box"][3] - width - 1], outline=colour(c["group"]), width=width)
        _label(draw, (c["box"][0] + 3, c["box"][1] + 3), f"C{c['number']}", (255, 255, 255), font)
    for item in items:
        draw.rectangle(item["box"], outline=colour(item["group"]), width=width)
        text = "?" if item["group"] is None else str(item["group"] + 1)
        _label(draw, (item["box"][0], max(0, item["box"][1] - font.size - 4)), text, colour(item["group"]), font)
    return out


def contact_sheet(rows: Sequence[Sequence[Image.Image]], titles: Sequence[str], cell: int = 96,
                  max_per_row: int = 12) -> Image.Image:
    """One row per group (at most `max_per_row` crops shown, the count in the title)."""
    font = _font(14)
    label_w = 150
    n_rows = max(1, len(rows))
    sheet = Image.new("RGB", (label_w + cell * max_per_row + 8, n_rows * (cell + 8) + 8), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for r, (crops, title) in enumerate(zip(rows, titles, strict=True)):
        y = 8 + r * (cell + 8)
        draw.rectangle([4, y, 14, y + cell], fill=colour(r))
        draw.multiline_text((20, y + 4), title, fill=(240, 240, 240), font=font)
        for c, crop in enumerate(crops[:max_per_row]):
            thumb = crop.convert("RGB").copy()
            thumb.thumbnail((cell, cell))
            sheet.paste(thumb, (label_w + c * cell + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
    return sheet
