"""What a model file is, read without torch: the API lists models and validates jobs in a process
that never imports torch, so `.pt` files are read as zips and their pickle walked with stubs.

Formats: `ultralytics` (YOLOv8/11/v5u... checkpoints, classes under `ultralytics.nn`), `yolov5`
(legacy checkpoints of the ultralytics/yolov5 repository, classes under `models.yolo`), `onnx`
(exported models; ultralytics writes `names` into the metadata).
"""
from __future__ import annotations

import ast
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = (".pt", ".onnx")


@dataclass
class CheckpointInfo:
    format: str  # "ultralytics", "yolov5", "onnx" or "unknown"
    classes: list[str] = field(default_factory=list)
    task: str = "detect"


class _Stub:
    """Stands for any class in the pickle; keeps the state it is given."""

    def __init__(self, *args, **kwargs):
        self.state = kwargs or None

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):  # a stubbed function called by a REDUCE
        return _Stub()


class _StubUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str):
        self.modules.add(module)
        if module == "collections" and name == "OrderedDict":
            return dict
        return type(name, (_Stub,), {})

    def persistent_load(self, pid):  # tensor storages: not needed to read names
        return None


def _names_of(obj) -> list[str] | None:
    state = getattr(obj, "state", None)
    if isinstance(state, tuple):  # (state, slotstate)
        state = state[0]
    if not isinstance(state, dict):
        return None
    names = state.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """The format and class names of a model file, or format "unknown" if it cannot be read."""
    if path.suffix == ".onnx":
        return _inspect_onnx(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            unpickler = _StubUnpickler(archive.read(pkl))
            top = unpickler.load()
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError, OSError, ValueError,
            TypeError, AttributeError, IndexError, KeyError):
        return CheckpointInfo("unknown")
    modules = unpickler.modules
    if any(m.startswith("ultralytics.") for m in modules):
        fmt = "ultralytics"
    elif any(m.startswith("models.") for m in modules):
        fmt = "yolov5"
    else:
        fmt = "unknown"
    classes: list[str] | None = None
    if isinstance(top, dict):
        for key in ("ema", "model"):
            if top.get(key) is not None and (classes := _names_of(top[key])):
                break
    task = "detect"
    if isinstance(top, dict) and top.get("model") is not None:
        state = getattr(top["model"], "state", None)
        if isinstance(state, dict) and isinstance(state.get("task"), str):
            task = state["task"]
    return CheckpointInfo(fmt, classes or [], task)


def _inspect_onnx(path: Path) -> CheckpointInfo:
    try:
        import onnx  # noqa: PLC0415 - small, no torch

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file is "unknown", listed with its error
        return CheckpointInfo("unknown")
    meta = {p.key: p.value for p in model.metadata_props}
    classes: list[str] = []
    try:
        names = ast.literal_eval(meta.get("names", "{}"))
        classes = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else []
    except (ValueError, SyntaxError):
        pass
    return CheckpointInfo("onnx", classes, meta.get("task", "detect"))
