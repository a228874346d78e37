"""Test sets of real pictures reused across documents, with their ground truth: what the tests and
bench/similarity.py measure the demo on.

A set is made from a folder of real public-domain pictures (tests/data/similarity/, whose
`sets.json` says which pictures are reused and which are distractors, and whether each is line art
or a photograph): each reused picture appears 2 to 4 times, in different documents, each copy put
through a seeded random recipe of real degradations (degrade.py); each distractor appears once.
Two items are a true pair when they are copies of the same picture. Line art may be printed as a
threshold of ink (as a woodcut or an engraving is); photographs only as halftone, as a press prints
them. `pages` lays the copies out on book pages, so a regions job can find them first.
"""
from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .degrade import Recipe, apply, random_recipe

LINE_ART, PHOTO = "lineart", "photo"


@dataclass
class Sample:
    image: Image.Image
    doc_uid: str
    name: str
    group: str  # the source picture's name: samples of one group are copies of one picture
    recipe: str

    @property
    def key(self) -> str:
        return f"{self.doc_uid}/{self.name}"


def manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "sets.json").read_text())


def load(folder: Path, name: str) -> Image.Image:
    with Image.open(Path(folder) / name) as image:
        return image.convert("RGB")


def recipe_for(kind: str, rng: random.Random, mirror: bool = False) -> Recipe:
    recipe = random_recipe(rng, mirror=mirror)
    if kind == PHOTO and recipe.print_like == "threshold":
        recipe = Recipe(**{**recipe.__dict__, "print_like": "halftone"})
    return recipe


def build(folder: Path, split: str, seed: int = 0, documents: int = 4, copies: tuple[int, int] = (2, 4),
          mirrored: Sequence[str] = ()) -> list[Sample]:
    """The samples of `split` ("tune" or "held_out" in sets.json). Copies of one picture go to
    different documents; `mirrored` pictures get one mirrored copy (for the transpositions test)."""
    spec = manifest(folder)
    chosen = spec["splits"][split]
    kinds = spec["kinds"]
    rng = random.Random(seed)
    samples: list[Sample] = []
    for name in chosen["reused"]:
        picture = load(folder, name)
        count = rng.randint(*copies)
        docs = rng.sample(range(documents), min(count, documents)) + [rng.randrange(documents)
                                                                         for _ in range(count - documents)]
        stem = Path(name).stem
        for c, doc in enumerate(docs):
            # the first copy is the picture as shipped (a clean scan), the others degraded copies
            recipe = Recipe() if c == 0 else recipe_for(kinds[name], rng, mirror=name in mirrored and c == 1)
            samples.append(Sample(apply(picture, recipe, seed=rng.randrange(1 << 30)), f"book{doc}",
                                  f"{stem}-{c}", stem, recipe.describe()))
    for name in chosen["distractors"]:
        picture = load(folder, name)
        stem = Path(name).stem
        recipe = recipe_for(kinds[name], rng)
        samples.append(Sample(apply(picture, recipe, seed=rng.randrange(1 << 30)), f"book{rng.randrange(documents)}",
                              f"{stem}-0", stem, recipe.describe()))
    return samples


def truth(samples: Sequence[Sample]) -> set[tuple[str, str]]:
    """Every pair of copies of one picture, as sorted (key, key)."""
    return {tuple(sorted((a.key, b.key))) for a, b in itertools.combinations(samples, 2)  # type: ignore[misc]
            if a.group == b.group}


def score(found: Iterable[tuple[str, str]], true_pairs: set[tuple[str, str]]) -> dict:
    """Precision and recall of reported pairs against the true ones."""
    reported = {tuple(sorted(p)) for p in found}
    hits = len(reported & true_pairs)
    return {"reported": len(reported), "true": len(true_pairs), "correct": hits,
            "precision": round(hits / len(reported), 4) if reported else 1.0,
            "recall": round(hits / len(true_pairs), 4) if true_pairs else 1.0}


# -- pages: the copies printed in books, for a regions job to find ---------------------------------
@dataclass
class Placement:
    doc_uid: str
    page: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the page's pixels
    sample: Sample


def pages(samples: Sequence[Sample], seed: int = 0, size: tuple[int, int] = (620, 860),
          per_page: int = 2) -> tuple[dict[str, list[tuple[str, Image.Image]]], list[Placement]]:
    """Each document's samples printed on pages (at most `per_page` each, framed as book
    illustrations are, text lines around them): ({doc: [(page name, page image)]}, placements)."""
    rng = random.Random(seed)
    by_doc: dict[str, list[Sample]] = {}
    for sample in samples:
        by_doc.setdefault(sample.doc_uid, []).append(sample)
    books: dict[str, list[tuple[str, Image.Image]]] = {}
    placements: list[Placement] = []
    width, height = size
    for doc, items in sorted(by_doc.items()):
        rng.shuffle(items)
        books[doc] = []
        for p in range(0, len(items), per_page):
            name = f"p{p // per_page + 1:03d}"
            paper = (rng.randint(228, 245), rng.randint(220, 236), rng.randint(196, 214))
            page = Image.new("RGB", (width, height), paper)
            draw = ImageDraw.Draw(page)
            chunk = items[p:p + per_page]
            slot_h = (height - 80) // len(chunk)
            boxes = []
            for s, sample in enumerate(chunk):
                picture = sample.image.copy()
                picture.thumbnail((int(width * rng.uniform(0.45, 0.8)), int(slot_h * 0.8)), Image.Resampling.LANCZOS)
                framed = Image.new("RGB", (picture.width + 10, picture.height + 10), (25, 20, 15))
                framed.paste(picture, (5, 5))
                x1 = rng.randint(30, max(30, width - framed.width - 30))
                y1 = 40 + s * slot_h + rng.randint(0, max(0, slot_h - framed.height - 10))
                page.paste(framed, (x1, y1))
                box = (x1, y1, x1 + framed.width, y1 + framed.height)
                boxes.append(box)
                placements.append(Placement(doc, name, box, sample))
            _text_around(draw, rng, width, height, boxes)
            books[doc].append((name, page.filter(ImageFilter.GaussianBlur(0.6))))
    return books, placements


WORDS = ("the", "of", "and", "to", "in", "a", "that", "his", "was", "with", "for", "as", "had", "by", "which",
         "upon", "from", "were", "this", "but", "engraving", "plate", "figure", "book", "printer", "history",
         "shewing", "manner", "whereof", "aforesaid", "likewise", "chapter", "country", "people", "great")


def _text_around(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int,
                 boxes: Sequence[tuple[int, int, int, int]]) -> None:
    """Lines of words set in Pillow's own font wherever no picture is: a page a layout model reads
    as text, around the pictures it should find."""
    font = ImageFont.load_default(15)
    y = 28
    while y < height - 30:
        x = 30
        while x < width - 40:
            word = rng.choice(WORDS)
            right = x + int(draw.textlength(word, font=font))
            if right > width - 30:
                break
            if not any(x < b[2] + 8 and b[0] < right + 8 and y < b[3] + 8 and b[1] < y + 18 for b in boxes):
                draw.text((x, y), word, fill=(45, 38, 30), font=font)
            x = right + rng.randint(6, 9)
        y += 21


def contained(box: Sequence[float], placements: Iterable[Placement], share: float = 0.7) -> list[Placement]:
    """The placements of which `box` (a detected region of the same page) holds at least `share`:
    a region around two pictures holds both, and matching either is right."""
    found = []
    for placement in placements:
        p = placement.box
        ix = max(0.0, min(box[2], p[2]) - max(box[0], p[0]))
        iy = max(0.0, min(box[3], p[3]) - max(box[1], p[1]))
        if ix * iy >= share * (p[2] - p[0]) * (p[3] - p[1]):
            found.append(placement)
    return found


def score_regions(found: Iterable[tuple[str, str]], regions: dict[str, list[Placement]],
                  placements: Sequence[Placement]) -> dict:
    """Precision and recall of pairs of detected regions ({item key: placements it holds}).

    A reported pair is right when its two regions hold copies of one picture; a true pair (two
    placed copies of one picture) is found when some reported pair's regions hold one each. A
    picture the detector missed is a true pair not found: recall measures the whole chain."""
    reported = {tuple(sorted(p)) for p in found}
    correct = sum(1 for a, b in reported
                  if {p.sample.group for p in regions.get(a, [])} & {p.sample.group for p in regions.get(b, [])})
    index = {id(p): i for i, p in enumerate(placements)}
    hit: set[tuple[int, int]] = set()
    for a, b in reported:
        for pa in regions.get(a, []):
            for pb in regions.get(b, []):
                if pa is not pb and pa.sample.group == pb.sample.group:
                    hit.add(tuple(sorted((index[id(pa)], index[id(pb)]))))  # type: ignore[arg-type]
    true_pairs = {(i, j) for i, j in itertools.combinations(range(len(placements)), 2)
                  if placements[i].sample.group == placements[j].sample.group}
    return {"reported": len(reported), "correct": correct, "true": len(true_pairs), "found": len(hit & true_pairs),
            "precision": round(correct / len(reported), 4) if reported else 1.0,
            "recall": round(len(hit & true_pairs) / len(true_pairs), 4) if true_pairs else 1.0}


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
