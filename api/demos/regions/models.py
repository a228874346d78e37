"""The regions model folder: which checkpoints there are, what they hold, where they came from.

Models live in DATA_FOLDER/models/regions/. A model pulled from the Hugging Face Hub has a
`<file>.source.json` beside it (repository, revision, sha256), shown as its source. The runtime
workers chose for a model (`runtimes.RuntimeChooser`) is recorded beside its exports; the API reads
those records here, without the worker's libraries.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from api.sdk import ModelEntry, export_folder

from .checkpoints import SUFFIXES, inspect_checkpoint

CHOICE_RECORD = "choice-{kind}-{setting}-{imgsz}.json"  # kind: cpu or cuda; setting: INFERENCE_RUNTIME
_details_cache: dict[tuple[str, float, int], dict] = {}


def model_files(folder: Path) -> list[Path]:
    """Checkpoint files, newest first."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (-p.stat().st_mtime, p.name))


def describe(path: Path, cache_root: Path | None = None) -> dict:
    """{"updated", "classes", "format", "size", "source", "runtimes"} for GET /regions/models?details=1;
    `runtimes` says which runtime workers chose, per device, setting and input size."""
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _details_cache:
        info = inspect_checkpoint(path)
        source = "local file"
        sidecar = path.with_name(path.name + ".source.json")
        if sidecar.is_file():
            try:
                origin = json.loads(sidecar.read_text())
                source = origin.get("source") or f"huggingface:{origin['repo']}/{origin['file']}"
            except (ValueError, KeyError, TypeError):
                pass
        _details_cache[key] = {
            "updated": datetime.fromtimestamp(stat.st_mtime, UTC).date().isoformat(),
            "classes": info.classes, "format": info.format, "task": info.task, "size": stat.st_size,
            "source": source,
        }
    details = dict(_details_cache[key])
    if cache_root is not None:
        details["runtimes"] = recorded_choices(cache_root, path)
    return details


def recorded_choices(cache_root: Path, model_path: Path) -> dict[str, str]:
    """{"<kind>-<setting>-<imgsz>": runtime} for the choices workers made for this model."""
    found = {}
    pattern = CHOICE_RECORD.format(kind="*", setting="*", imgsz="*")
    for record in sorted(export_folder(cache_root, model_path).glob(pattern)):
        try:
            found[record.stem.removeprefix("choice-")] = json.loads(record.read_text())["runtime"]
        except (ValueError, KeyError, OSError):
            continue
    return found


def missing_model_message(name: str, folder: Path, catalog: Sequence[ModelEntry] = ()) -> str:
    """What to do when a model is not there: in plain words, with the commands."""
    present = [p.name for p in model_files(folder)]
    entry = next((e for e in catalog if name in (e.file, e.name)), None) if name else None
    if entry is not None:
        return (f"model {name!r} is not installed: python -m api models pull regions {entry.name} "
                f"(or copy {entry.file} to {folder})")
    defaults = [e for e in catalog if e.default]
    pull = (f"python -m api models pull regions --defaults (installs {', '.join(e.name for e in defaults)})"
            if defaults else "python -m api models pull regions <huggingface repo> <file>")
    where = f"put {name or 'a YOLO checkpoint (.pt or .onnx)'} in {folder}"
    have = f"; available: {', '.join(present)}" if present else "; no model is installed yet"
    if name:
        return f"model {name!r} not found: {where}, or {pull}{have}"
    return f"no regions model: run {pull}, or {where}"
