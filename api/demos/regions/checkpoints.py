"""What a model file is, read without torch: the API lists models and validates jobs in a process
that never imports torch, so `.pt` files are read as zips and their pickle walked with stubs.

Formats: `ultralytics` (YOLOv8/11/v5u... checkpoints, classes under `ultralytics.nn`), `yolov5`
(legacy checkpoints of the ultralytics/yolov5 repository, classes under `models.yolo`), `onnx`
(exported models; ultralytics writes `names` into the metadata, read here without the onnx package).
"""
from __future__ import annotations

import ast
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
        meta = onnx_metadata(path)
    except (ValueError, OSError, UnicodeDecodeError):
        return CheckpointInfo("unknown")
    classes: list[str] = []
    try:
        names = ast.literal_eval(meta.get("names", "{}"))
        classes = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else []
    except (ValueError, SyntaxError, TypeError):
        pass
    return CheckpointInfo("onnx", classes, meta.get("task", "detect"))


# An ONNX file is one protobuf message (onnx.proto's ModelProto); ultralytics writes the class names
# into its `metadata_props`. Those few fields are read here with the standard library: the onnx
# package would bring numpy and protobuf into the API process to read two strings.
_ONNX_GRAPH, _ONNX_METADATA = 7, 14  # ModelProto fields; a metadata entry has key = 1, value = 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5  # protobuf wire types


def onnx_metadata(path: Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX model as a dict; ValueError if the file is not a well-formed
    ModelProto with a graph. The graph and weights are skipped over, never read into memory."""
    size = path.stat().st_size
    meta: dict[str, str] = {}
    has_graph = False
    with open(path, "rb") as handle:
        while handle.tell() < size:
            field, wire = _read_tag(handle)
            if wire == _LENGTH:
                length = _read_varint(handle)
                if handle.tell() + length > size:
                    raise ValueError("field past the end of the file")
                if field == _ONNX_METADATA:
                    entry = _fields(handle.read(length))
                    meta[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
                else:
                    has_graph |= field == _ONNX_GRAPH
                    handle.seek(length, 1)
            else:
                _skip(handle, wire)
        if handle.tell() != size or not has_graph:
            raise ValueError("not an ONNX model")
    return meta


def _fields(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a small message (a metadata entry), by number."""
    stream = io.BytesIO(data)
    found: dict[int, bytes] = {}
    while stream.tell() < len(data):
        field, wire = _read_tag(stream)
        if wire == _LENGTH:
            length = _read_varint(stream)
            found[field] = stream.read(length)
            if len(found[field]) != length:
                raise ValueError("truncated field")
        else:
            _skip(stream, wire)
    return found


def _read_tag(stream: BinaryIO) -> tuple[int, int]:
    tag = _read_varint(stream)
    if tag >> 3 == 0:
        raise ValueError("field number 0")
    return tag >> 3, tag & 7


def _read_varint(stream: BinaryIO) -> int:
    value = 0
    for shift in range(0, 70, 7):
        byte = stream.read(1)
        if not byte:
            raise ValueError("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    raise ValueError("varint too long")


def _skip(stream: BinaryIO, wire: int) -> None:
    if wire == _VARINT:
        _read_varint(stream)
    elif wire in (_FIXED64, _FIXED32):
        stream.seek(8 if wire == _FIXED64 else 4, 1)
    else:
        raise ValueError(f"unexpected wire type {wire}")
