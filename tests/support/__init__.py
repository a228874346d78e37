"""Helpers the tests (and the benches) share: real servers, processes and data, no fixtures.

Fixtures and pytest hooks live in tests/conftest.py; everything here is plain code that a
bench can import without pytest's collection machinery."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: processes start there, confs are found from it
