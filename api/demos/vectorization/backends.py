"""Backends: one interface, `detect(rgb) -> Detection`, so a trained model can replace the
geometric pipeline without touching the demo, the outputs or the evaluation.

`geometric` (the only one today) needs no weights. A learned backend would be a class here with
the same `detect`, a case in `make_backend`, and its name added to the demo's `backend` choices.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .geometric import Detection, GeometricDetector, Settings


class Backend(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> Detection:  # pragma: no cover - an interface
        """The primitives of one RGB image (H×W×3 uint8)."""


class Geometric:
    name = "geometric"

    def __init__(self, settings: Settings):
        self.detector = GeometricDetector(settings)

    def detect(self, rgb: np.ndarray) -> Detection:
        return self.detector.detect(rgb)


def make_backend(name: str, settings: Settings) -> Backend:
    """The backend a job asked for; the demo's `backend` choices keep any other name out."""
    if name == "geometric":
        return Geometric(settings)
    raise ValueError(f"unknown backend {name!r}")
