"""Where workers keep model exports (OpenVINO, ONNX, TensorRT...) and how they agree on making
them: DATA_FOLDER/models/.cache/<demo>/<first 16 hex of the model file's sha256>/, one export at a
time per model under an exclusive file lock. By content, so a renamed file keeps its exports and a
replaced one gets new ones. Demos decide what to export and whether it is faithful; this module
only says where and when."""
from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Iterator
from pathlib import Path

from .inputs.cache import sha256_file

RUNTIME_SETTINGS = ("auto", "torch", "onnx", "openvino", "tensorrt")


def export_folder(cache_root: Path, model_path: Path) -> Path:
    """`cache_root/<content key of model_path>` (the key is cached per path, mtime and size)."""
    stat = model_path.stat()
    return cache_root / _content_key(str(model_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _content_key(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(Path(path))[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (the workers of this host, or of hosts sharing
    DATA_FOLDER over a filesystem with working locks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_runtime_setting(value: str) -> str:
    if value not in RUNTIME_SETTINGS:
        raise ValueError(f"INFERENCE_RUNTIME must be one of {', '.join(RUNTIME_SETTINGS)}, not {value!r}")
    return value
