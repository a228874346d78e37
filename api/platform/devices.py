"""Which device a worker's models run on."""
from __future__ import annotations

import functools


@functools.cache
def pick_device(setting: str) -> str:
    """`DEVICE=auto` means CUDA when this (worker) process can see a GPU. Asking imports torch, so
    only workers ask (the API process never does; tests guard it)."""
    if setting != "auto":
        return setting
    try:
        import torch  # noqa: PLC0415 - optional, heavy, and CUDA is touched only in workers
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
