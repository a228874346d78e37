"""Vectorization benchmark: time per image and F1 per primitive type, on every evaluation set.

Sets: `synthetic` (generated diagrams) and each real collection of realsets.py (`kicad` and
`footprints`, tuned on; `librecad`, held out of tuning), each clean and scan-like. The real
collections are fetched once (tools/fetch_vector_sets.py, cached and checksummed).

For each size (default 1000 and 3000 px) and each kind of drawing (clean; noisy: tinted uneven
paper, fibres, faded brown ink, blur, sensor noise, specks), generates diagrams with exact ground
truth (api/demos/vectorization/synthetic.py), runs the geometric backend as a worker does (detect,
then SVG, JSON and preview PNG), and prints:

- median seconds per image: detection alone and with the output files (wall clock), and the
  CPU seconds of the whole (less sensitive to a busy machine);
- precision / recall / F1 per type (line, circle, arc) at 3 px, and at 3 px × size/1000 (the
  drawings scale with the image, pens included, so this is the same relative tolerance).

For real sets: F1 per type at 3 px, mean error, CPU seconds per image, what the truth could not
hold (skipped counts), the images worst first, and with --pictures DIR a picture of the worst ones
(prediction over truth, misses marked: evaluate.overlay).

    nice .venv/bin/python -m bench.vectorization [--images 10] [--sizes 1000,3000] [--threads 2]
    nice .venv/bin/python -m bench.vectorization --sets kicad,footprints,librecad --images 12 [--pictures /tmp/worst]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2

from api.demos.vectorization.evaluate import match, overlay, total, worst_first
from api.demos.vectorization.geometric import GeometricDetector, Settings
from api.demos.vectorization.preview import draw_preview
from api.demos.vectorization.svg import to_svg
from api.demos.vectorization.synthetic import generate
from tools.fetch_vector_sets import fetch


def run(size: int, noisy: bool, images: int, first_seed: int) -> dict:
    detector = GeometricDetector(Settings())
    detect_times, full_times, cpu_times, at_3px, scaled = [], [], [], [], []
    tolerance = 3.0 * size / 1000
    for seed in range(first_seed, first_seed + images):
        diagram = generate(seed, size, noisy=noisy)
        started, cpu_started = time.perf_counter(), time.process_time()
        detection = detector.detect(diagram.image)
        detected = time.perf_counter()
        h, w = diagram.image.shape[:2]
        to_svg(detection.primitives, w, h, detection.stroke_width)
        json.dumps([p.to_dict() for p in detection.primitives])
        cv2.imencode(".png", draw_preview(diagram.image, detection.primitives)[..., ::-1],
                     [cv2.IMWRITE_PNG_COMPRESSION, 3])
        finished = time.perf_counter()
        detect_times.append(detected - started)
        full_times.append(finished - started)
        cpu_times.append(time.process_time() - cpu_started)
        at_3px.append(match(detection.primitives, diagram.primitives, 3.0))
        scaled.append(match(detection.primitives, diagram.primitives, tolerance))
    return {
        "size_px": size, "noisy": noisy, "images": images,
        "median_detect_s": round(statistics.median(detect_times), 3),
        "median_per_image_s": round(statistics.median(full_times), 3),
        "median_cpu_per_image_s": round(statistics.median(cpu_times), 3),
        "f1_at_3px": {k: v["f1"] for k, v in total(at_3px).items()},
        f"f1_at_{tolerance:g}px": {k: v["f1"] for k, v in total(scaled).items()},
        "detail_at_3px": total(at_3px),
    }


def run_real(name: str, scan: bool, images: int, pictures: Path | None) -> dict:
    """One real collection, clean or scan-like: scores pooled over `images` pages at 3 px."""
    from api.demos.vectorization import realsets

    detector = GeometricDetector(Settings())
    per_image, cpu_times, skipped = {}, [], {}
    predictions = {}
    for sheet in realsets.sheets(name, fetch(name), images, scan=scan):
        cpu_started = time.process_time()
        detection = detector.detect(sheet.image)
        cpu_times.append(time.process_time() - cpu_started)
        per_image[sheet.name] = match(detection.primitives, sheet.primitives, 3.0, sheet.unscored)
        predictions[sheet.name] = (sheet, detection.primitives)
        for key, n in sheet.skipped.items():
            skipped[key] = skipped.get(key, 0) + n
    pooled = total(per_image.values())
    order = worst_first(per_image)
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        for image_name in order[:3]:
            sheet, predicted = predictions[image_name]
            picture = overlay(sheet.image, predicted, sheet.primitives, sheet.unscored)
            cv2.imwrite(str(pictures / f"{image_name}{'-scan' if scan else ''}.png"), picture[..., ::-1])
    return {
        "set": name, "scan": scan, "held_out": name in realsets.HELD_OUT, "images": len(per_image),
        "f1_at_3px": {k: v["f1"] for k, v in pooled.items()},
        "mean_error_px": {k: v["mean_error_px"] for k, v in pooled.items()},
        "median_cpu_per_image_s": round(statistics.median(cpu_times), 3) if cpu_times else None,
        "skipped_in_truth": skipped,
        "worst_first": [(n, {k: per_image[n][k]["f1"] for k in per_image[n]}) for n in order[:5]],
        "detail_at_3px": pooled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10, help="diagrams per size and kind (default 10)")
    parser.add_argument("--sizes", default="1000,3000", help="image sizes in px (default 1000,3000)")
    parser.add_argument("--seed", type=int, default=1000, help="first seed (default 1000: not the tests' seeds)")
    parser.add_argument("--threads", type=int, default=2, help="OpenCV threads (default 2)")
    parser.add_argument("--clean-only", action="store_true")
    parser.add_argument("--sets", default="synthetic,kicad,footprints,librecad",
                        help="comma-separated: synthetic, kicad, footprints, librecad (default all)")
    parser.add_argument("--pictures", type=Path, default=None, help="folder for pictures of the worst images")
    args = parser.parse_args()
    sets = args.sets.split(",")
    cv2.setNumThreads(args.threads)
    generate(0, 200)  # warm imports (skimage, scipy) before timing
    GeometricDetector().detect(generate(0, 200).image)
    results = []
    kinds = (False,) if args.clean_only else (False, True)
    for size in [int(s) for s in args.sizes.split(",")] if "synthetic" in sets else []:
        for noisy in kinds:
            result = run(size, noisy, args.images, args.seed)
            results.append(result)
            brief = {k: v for k, v in result.items() if k != "detail_at_3px"}
            print(json.dumps(brief), flush=True)
    for name in [s for s in sets if s != "synthetic"]:
        for scan in kinds:
            result = run_real(name, scan, args.images, args.pictures)
            results.append(result)
            brief = {k: v for k, v in result.items() if k != "detail_at_3px"}
            print(json.dumps(brief), flush=True)
    print(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()
