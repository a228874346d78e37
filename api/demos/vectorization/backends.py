"""Backends: one interface, `detect(rgb) -> Detection`, so a trained model can replace the
geometric pipeline without touching the demo, the outputs or the evaluation.

`geometric` (default) needs no weights. `learned` is a seam: it is offered as a choice so clients
can ask for it, and a job asking for it fails with a plain "learned backend not available"
until a model (e.g. a checkpoint in DATA_FOLDER/models/vectorization/) and its code are added here.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .geometric import Detection, GeometricDetector, Settings

BACKENDS = ("geometric", "learned")


class Backend(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> Detection:  # pragma: no cover - an interface
        """The primitives of one RGB image (H×W×3 uint8)."""


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run here; the message is meant for the client."""


class Geometric:
    name = "geometric"

    def __init__(self, settings: Settings):
        self.detector = GeometricDetector(settings)

    def detect(self, rgb: np.ndarray) -> Detection:
        return self.detector.detect(rgb)


def make_backend(name: str, settings: Settings) -> Backend:
    if name == "geometric":
        return Geometric(settings)
    if name == "learned":
        raise BackendUnavailable("learned backend not available: no trained vectorization model is installed "
                                 "on this server; use backend=geometric")
    raise BackendUnavailable(f"unknown backend {name!r}")
