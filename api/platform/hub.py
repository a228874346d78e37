"""Pulling model files from the Hugging Face Hub into DATA_FOLDER/models/<demo>/.

Used by `python -m api models pull <demo> <repo> <file>`, on a machine that is online; workers
never download at run time. The file is checked against `sha256` when given, copied in
atomically, and a `<file>.source.json` records where it came from.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .inputs.cache import sha256_file
from .storage import atomic_open, atomic_write


class PullError(Exception):
    """The model could not be pulled; the message says what to do instead."""


def pull(repo: str, filename: str, folder: Path, *, sha256: str = "", revision: str | None = None) -> Path:
    """Download `filename` of the Hub repository `repo` into `folder`; return its path there."""
    target = folder / Path(filename).name
    try:
        from huggingface_hub import hf_hub_download  # noqa: PLC0415 - only this command needs it
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # noqa: PLC0415

        downloaded = Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision))
    except ImportError:
        raise PullError("huggingface-hub is not installed (pip install -r requirements.txt)") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise PullError(f"cannot download {filename} from huggingface.co/{repo}: {str(exc).rstrip('. ')}. "
                        f"Offline? Copy the file by hand to {target}") from None
    digest = sha256_file(downloaded)
    if sha256 and digest != sha256.lower():
        raise PullError(f"{filename}: sha256 is {digest}, expected {sha256}; not installed")
    folder.mkdir(parents=True, exist_ok=True)
    with open(downloaded, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    atomic_write(target.with_name(target.name + ".source.json"),
                 json.dumps({"repo": repo, "file": filename, "revision": revision, "sha256": digest}))
    return target
