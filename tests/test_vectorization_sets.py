"""Real drawings through the API and a real worker: a small deterministic subset of each real
collection (KiCad symbols, tuned on; LibreCAD parts, held out of tuning), clean and scan-like,
must keep F1 at 3 px above a floor. The floors are the scores measured on these pages minus a
margin (they guard against regressions; the targets of the work are in bench/vectorization.py)."""
from __future__ import annotations

import io
import json

import pytest

from api.demos.vectorization.evaluate import match, total
from api.demos.vectorization.primitives import Primitive
from tests.support import vector_sets
from tests.support.platform import json_of
from tests.test_vectorization import APP, png_of, result_path, vec, wait_done  # noqa: F401 - vec: a fixture

PAGES = 2
MARGIN = 0.1
# F1 at 3 px measured on pages 0–1 of each set with the API's default parameters (min_radius 3), then MARGIN
# below. Was (before dots, corners and the ring test): kicad .67/.58/.40 clean, .65/.36/0 scan; librecad
# .61/.85/.11 clean, .49/.85/.11 scan. LibreCAD's scan-like circles fell (.85 → .60): its circles of radius
# 11.7 drawn 6 px wide come out just under the ring test's 1.8 pen widths (geometric.RING_PENS, chosen on
# KiCad only; LibreCAD is held out of tuning), and the floor says so rather than hiding it. Raised after
# short bars and crossing junctions (issue 17), to what was measured less 0.05: KiCad clean arcs .50
# (MEASURED .45), LibreCAD scan-like circles .88 (.83; measured, not tuned on: LibreCAD stays held out).
# Raised again after thin small arcs (fitting.ChainCutter._rounder): KiCad arcs .80 clean (MEASURED .75),
# .67 scan-like (.62; found there at last). Raised again after the truth's ink width was measured and
# combs, coils, tangent snaps and straight ends (issue 17), to what was measured less 0.05: KiCad arcs
# 1.0 clean (.95), .80 scan-like (.75); LibreCAD lines .71 clean (.66), .59 scan-like (.54), arcs .27
# clean (.22), .36 scan-like (.31) (measured, not tuned on). Raised after the round "o" of words stopped
# counting as rings (binarize._in_a_word): KiCad circles .76 clean (.71), .77 scan-like (.72). Raised after
# obtuse polyline corners stopped becoming flat arcs (fitting.bent) and tiny truth pieces stopped counting
# as false finds (evaluate.match's unscored): KiCad scan-like arcs 1.0 (.95); LibreCAD lines .73 clean
# (.67), arcs .30 clean (.25), .40 scan-like (.35) (measured, not tuned on). Raised after small rings
# crossed by lines were found from their holes (rings.py): KiCad circles .89 clean (.84); and after
# lines were cut at necks and breaks (ends.split_at_necks): KiCad lines .77 clean (.72); and after
# filled acute corners stopped being dots (dots._a_corner): KiCad circles .96 scan-like (.91). Raised after
# the straight sides of holes became line pieces (holes.py): KiCad lines .79 clean (.74); LibreCAD lines .73
# clean (.68), .61 scan-like (.56) (measured, not tuned on; .60 after the sides in a row). Raised after the
# stroke-ridge check, the centring and the touching ends read from a full stroke (issue 17): KiCad lines
# .82 clean (.77), .76 scan-like (.71), circles .93 clean (.88); LibreCAD lines .62 scan-like (.57)
# (measured, not tuned on). Raised after fillets, tangent circles and centre marks (issue 17): LibreCAD
# lines .86 clean (.81), .70 scan-like (.65), arcs .67 clean and scan-like (.62) (measured, not tuned on).
MEASURED = {
    ("kicad", False): {"line": 0.77, "circle": 0.88, "arc": 0.95},
    ("kicad", True): {"line": 0.71, "circle": 0.91, "arc": 0.95},
    ("librecad", False): {"line": 0.81, "circle": 0.88, "arc": 0.62},
    ("librecad", True): {"line": 0.65, "circle": 0.83, "arc": 0.62},
}


@pytest.mark.parametrize("name", ["kicad", "librecad"])
def test_real_drawings_through_api_and_worker_keep_their_floor(vec, name):  # noqa: F811 - the fixture
    client = vec
    pages = {(scan, sheet.name): sheet for scan in (False, True) for sheet in vector_sets.sheets(name, PAGES, scan)}
    files = [(io.BytesIO(png_of(sheet.image)), f"{sheet.name}{'-scan' if scan else ''}.png")
             for (scan, _), sheet in pages.items()]
    response = client.post(f"/{APP}/start", content_type="multipart/form-data", data={"files": files})
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    status = wait_done(client, tracking_id)
    assert status["state"] == "SUCCESS" and status["error_count"] == 0, json.dumps(status)[:3000]
    reports = {False: [], True: []}
    for (scan, sheet_name), sheet in pages.items():
        [entry] = status["output"]["documents"][f"{sheet_name}{'-scan' if scan else ''}"]
        data = json.loads(client.get(f"/{APP}/{tracking_id}/result/{result_path(entry['json'])}").data)
        predicted = [Primitive.from_dict(d) for d in data["primitives"]]
        reports[scan].append(match(predicted, sheet.primitives, tolerance=3, unscored=sheet.unscored))
    for scan, found in reports.items():
        scores = {k: v["f1"] for k, v in total(found).items()}
        print(f"{name} {'scan-like' if scan else 'clean'} F1 at 3 px through the API:", scores)
        # a type measured below MARGIN (arcs of scan-like KiCad pages: found on none) has no floor to keep
        floor = {k: round(v - MARGIN, 2) for k, v in MEASURED[(name, scan)].items() if v >= MARGIN}
        assert all(scores[k] >= floor[k] for k in floor), (name, scan, scores, floor)
