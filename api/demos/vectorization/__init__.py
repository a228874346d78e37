"""Vectorization demo: diagrams → SVG lines, circles and arcs, with their confidence.

For each image: `<doc>/<image>.svg` (the image's size and viewBox), `<doc>/<image>.json` (the same
primitives), `<doc>/<image>.png` (a preview: primitives in colour over the faded image); per
document `<doc>.zip` of its SVGs, as the reference service gives. Inputs are the platform's
documents and/or the crops of a finished `regions` job (`regions_job`), so the two demos chain.

Only `api.sdk` and the standard library are imported here: OpenCV, scikit-image and numpy are
imported by `job.py`, which `run` imports in the worker, never in the API process.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api.sdk import Demo, Document, Param

if TYPE_CHECKING:  # pragma: no cover
    from api.sdk import JobContext

REGIONS_APP = "regions"
# A tracking id's shape, checked here so a malformed one gets its own message rather than "no such job".


class Vectorization(Demo):
    name = "vectorization"
    description = ("Finds the lines, circles and arcs of diagrams (astronomy, geometry) and returns them as SVG "
                   "and JSON with a confidence each, a preview over the image, and a zip of SVGs per document.")
    params = {
        # One choice today; kept so clients that send backend=geometric go on working.
        "backend": Param(str, "geometric", choices=("geometric",), help="geometric: OpenCV + scikit-image, no weights"),
        "tolerance": Param(float, 2.0, min=0.5, max=10,
                           help="px a stroke's centre may stray from a fitted line or circle"),
        "min_length": Param(float, 0.0, min=0, max=100000,
                            help="shorter lines and arcs are dropped (px); 0: lines max(20, 5 × stroke width) "
                                 "(2.5 × side by side in a comb), arcs max(15, 6 × stroke width)"),
        "min_radius": Param(float, 3.0, min=0, max=100000,
                            help="smaller circles and arcs are dropped (px); solid dots of a pen's width count"),
        "min_size": Param(int, 0, min=0, max=10000,
                          help="ink blobs smaller than this both ways are text or specks (px); "
                               "0: max(24, 10 × stroke width); small round components with a hole are kept, "
                               "and so are three or more bars side by side in a comb (pins)"),
        "sensitivity": Param(float, 0.5, min=0.05, max=0.95,
                             help="threshold between paper (0) and the darkest ink (1); higher keeps fainter ink"),
        "max_gap": Param(float, 0.0, min=0, max=10000,
                         help="widest gap (px) bridged when joining fragments; 0: max(10, 4 × stroke width)"),
        "min_support": Param(float, 0.6, min=0, max=1,
                             help="share of a primitive's length that must lie on ink; also its confidence"),
        "max_side": Param(int, 4000, min=0, max=100000,
                          help="longer images are shrunk to this many px for detection (results in full-size px); "
                               "0: never"),
        "regions_job": Param(str, "", help="tracking_id of a finished regions job: vectorize its crops"),
    }

    def validate(self, raw: Any) -> dict:
        params = super().validate(raw)
        params["regions_job"] = params["regions_job"].strip().lower()
        return params

    def extra_documents(self, params: dict) -> list[Document]:
        """One `dir` document per document of the regions job, reading its crops folder."""
        tracking_id = params.get("regions_job") or ""
        if not tracking_id:
            return []
        return self.documents_of(REGIONS_APP, tracking_id, field="parameters.regions_job", subfolder="crops",
                                 purpose="regions (no crops) to vectorize")

    def run(self, job: JobContext, model: Any) -> dict:
        from .job import run_job  # noqa: PLC0415 - worker side: job.py imports OpenCV and numpy

        return run_job(job, job.params)

    def models(self) -> dict[str, dict]:
        return {"geometric": {"updated": "2026-11-26", "source": "built in: OpenCV + scikit-image, no weights",
                              "primitives": ["line", "circle", "arc"]}}


demo = Vectorization()
