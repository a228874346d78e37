"""Similarity demo: the same or a related illustration across documents (a woodcut reused in several
printed books, a diagram copied from manuscript to manuscript).

Items are the job's images, or the crops of a finished `regions` job (`regions_job`), or both;
`query` narrows the comparison to some items against the rest. Each item gets local features
(SIFT or ORB, OpenCV, no weights); a few candidates per item are retrieved (a VLAD index of those
features, or a CNN global descriptor when a backbone checkpoint is in DATA_FOLDER/models/similarity/),
and only those candidates are verified geometrically (RANSAC affine or homography): verification
costs N × topk pair checks, never N². Results: `pairs.json` (every verified pair above the
threshold with score, inliers and transform, and the clusters they link), `pairs/<doc_a>-<doc_b>.json`
per pair of documents as the reference service names them, and `contact_sheet.jpg`.

Only `api.sdk` and the standard library are imported here: OpenCV, numpy and torch come with
job.py, imported by `load_model`/`run` in the worker.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.sdk import SAFE_NAME, Demo, Document, InputError, Param, Setting

if TYPE_CHECKING:  # pragma: no cover
    from api.sdk import JobContext

REGIONS_APP = "regions"
FEATURES = ("auto", "cnn", "local")
LOCAL_FEATURES = ("sift", "orb")
TRANSFORMS = ("affine", "similarity", "homography")
# The reference's names; local features are rotation-invariant, so rotations only change the CNN's
# retrieval, while either flip adds a mirrored copy of each item's features (a reversed print).
TRANSPOSITIONS = ("none", "rot90", "rot180", "rot270", "hflip", "vflip")
BACKBONE_SUFFIXES = (".pt", ".pth")


def _transpositions(value: list) -> list:
    if not value:
        return ["none"]
    return list(dict.fromkeys(value))


class Similarity(Demo):
    name = "similarity"
    description = ("Finds the same or a related illustration across documents: local features verified "
                   "geometrically (RANSAC), pairs with score, inliers and transform, clusters of linked items, "
                   "a contact sheet of the best pairs.")
    params = {
        "feature": Param(str, "auto", choices=FEATURES,
                         help="local: SIFT/ORB candidates (VLAD index) and verification, no model; cnn: a backbone "
                              "in DATA_FOLDER/models/similarity/ retrieves the candidates, local features verify "
                              "them; auto: cnn when a backbone is there, else local"),
        "local_features": Param(str, "sift", choices=LOCAL_FEATURES, help="sift (better) or orb (faster)"),
        "model": Param(str, "", help="backbone file in DATA_FOLDER/models/similarity/ (default: the SIMILARITY_MODEL "
                                     "setting, else the newest file); see GET /similarity/models"),
        "topk": Param(int, 10, min=1, max=200, help="candidates verified per item"),
        "threshold": Param(float, 0.25, min=0, max=1,
                           help="pairs scoring at least this are reported and linked into clusters"),
        "min_inliers": Param(int, 12, min=4, max=10000, help="fewer geometric inliers: not the same picture"),
        "transform": Param(str, "affine", choices=TRANSFORMS,
                           help="the geometry a pair must agree on: affine (scans, crops, rescaled reprints), "
                                "similarity (rotation, scale, shift only) or homography (photographed pages)"),
        "transpositions": Param(list, ["none"], parse=_transpositions,
                                help=f"variants of each item also compared, as the reference: "
                                     f"{', '.join(TRANSPOSITIONS)}; hflip or vflip finds mirrored (reversed) copies"),
        "max_side": Param(int, 640, min=64, max=4096, help="items are shrunk to this long side for features (px)"),
        "max_features": Param(int, 1000, min=50, max=20000, help="local features kept per item"),
        "same_document": Param(bool, True, help="also report pairs within one document"),
        "query": Param(list, [], help="items compared against the rest, as \"<doc uid>\" or \"<doc uid>/<image>\"; "
                                      "empty: every item against every other"),
        "contact_pairs": Param(int, 12, min=0, max=100, help="best pairs drawn in contact_sheet.jpg"),
        "regions_job": Param(str, "", help="tracking_id of a finished regions job: its crops become items"),
    }
    settings = {
        "model": Setting(str, "", help="backbone checkpoint in DATA_FOLDER/models/similarity/ for feature=auto|cnn "
                                       "(a torchvision ResNet or ViT state dict, e.g. resnet50-0676ba61.pth copied "
                                       "from TORCH_HOME); empty: the newest file there. None is downloaded."),
    }

    def validate(self, raw: Any) -> dict:
        params = super().validate(raw)
        params["regions_job"] = params["regions_job"].strip().lower()
        bad = [t for t in params["transpositions"] if t not in TRANSPOSITIONS]
        if bad:
            raise InputError("parameters.transpositions", f"unknown transposition {bad[0]!r}; "
                                                          f"use {', '.join(TRANSPOSITIONS)}")
        params["query"] = [q.strip().strip("/") for q in params["query"] if q.strip().strip("/")]
        for i, ref in enumerate(params["query"]):
            if not all(SAFE_NAME.match(part) for part in ref.split("/", 1)):
                raise InputError(f"parameters.query[{i}]", "must be \"<doc uid>\" or \"<doc uid>/<image name>\"")
        if params["model"] and (Path(params["model"]).name != params["model"] or not SAFE_NAME.match(params["model"])):
            raise InputError("parameters.model", "must be a file name in DATA_FOLDER/models/similarity/")
        if params["feature"] == "cnn":
            name = params["model"] or self.default_model()
            if not name or not (self.models_folder / name).is_file():
                raise InputError("parameters.model" if params["model"] else "parameters.feature",
                                 f"feature=cnn needs a backbone checkpoint in {self.models_folder}"
                                 f"{'/' + name if name else '/'} (a torchvision ResNet or ViT state dict); "
                                 "or use feature=local")
        return params

    def default_model(self) -> str:
        """SIMILARITY_MODEL, else the newest checkpoint in the models folder ("" when none)."""
        configured = self.setting("model")
        if configured:
            return configured
        found = self._backbones()
        return max(found, key=lambda p: (p.stat().st_mtime, p.name)).name if found else ""

    def _backbones(self) -> list[Path]:
        folder = self.models_folder
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in BACKBONE_SUFFIXES)

    def extra_documents(self, params: dict) -> list[Document]:
        """One `dir` document per document of the regions job, reading its crops folder."""
        tracking_id = params.get("regions_job") or ""
        if not tracking_id:
            return []
        return self.documents_of(REGIONS_APP, tracking_id, field="parameters.regions_job", subfolder="crops",
                                 purpose="regions (no crops) to compare")

    def model_id(self, params: dict) -> str | None:
        """The backbone a job uses as `<file>@<modification time>` ("" for local features only):
        workers load it once, and again when the file is replaced."""
        if params.get("feature") == "local":
            return ""
        name = params.get("model") or self.default_model()
        path = self.models_folder / name if name else None
        if path is None or not path.is_file():
            return ""
        return f"{name}@{path.stat().st_mtime_ns}"

    def load_model(self, model_id: str | None) -> Any:
        """The backbone (torch, torchvision) or None: a job on local features never imports torch."""
        from .backbone import load_backbone  # noqa: PLC0415 - worker side: backbone.py imports torch

        name = (model_id or "").rpartition("@")[0]
        return load_backbone(self.models_folder, name, self.device) if name else None

    def run(self, job: JobContext, model: Any) -> dict:
        from .job import run_job  # noqa: PLC0415 - worker side: job.py imports OpenCV and numpy

        regions = self.finished_job(REGIONS_APP, job.params["regions_job"]) if job.params.get("regions_job") else None
        return run_job(job, model, regions.folder if regions is not None else None)

    def models(self) -> dict[str, dict]:
        found: dict[str, dict] = {
            "local": {"updated": "2026-11-28", "source": "built in: OpenCV SIFT/ORB + RANSAC, no weights",
                      "kind": "local features"}}
        default = self.default_model()
        for path in self._backbones():
            stat = path.stat()
            found[path.name] = {"updated": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
                                "size": stat.st_size, "kind": "backbone", "default": path.name == default}
        return found


demo = Similarity()
