"""The Hugging Face Hub as a source of model files: one `HubFile` (repository, file, revision),
the usual source of a catalog entry (`catalog.py`) on a machine that is online.

Files are downloaded by `python -m api models pull` or by `serve` before it starts its processes,
never by a worker or an API request. `HF_HUB_OFFLINE=1` is honoured when the download is asked
for, not only when huggingface_hub was first imported, so a machine (or a test) that is offline
gets the files already in the cache or a clear error, without trying the network.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

from .inputs.cache import sha256_file
from .storage import atomic_open, atomic_write

TRUE_STRINGS = {"1", "true", "yes", "on"}


class PullError(Exception):
    """A model file could not be had from a source; the message says what to do instead.
    `kind`: "unreachable" (the source did not answer or has no such file), "mismatch" (the bytes
    are not the ones expected: nothing was installed) or "invalid" (the source itself is wrong)."""

    def __init__(self, message: str, kind: str = "unreachable"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class HubFile:
    """`file` of the Hub repository `repo` at `revision` (a commit pins the bytes; a branch follows it)."""

    repo: str
    file: str
    revision: str | None = None
    kind: ClassVar[str] = "huggingface"

    def __post_init__(self) -> None:
        if self.repo.count("/") != 1 or not all(self.repo.split("/")) or not self.file or self.file.startswith("/"):
            raise ValueError(f"HubFile: repo must be 'owner/name' and file a path in it, not {self.repo!r}, "
                             f"{self.file!r}")

    def describe(self) -> str:
        return f"huggingface:{self.repo}/{self.file}" + (f"@{self.revision}" if self.revision else "")

    def record(self) -> dict:
        """What `.source.json` keeps of this source (`repo` and `file` as before the catalog)."""
        return {"repo": self.repo, "file": self.file, "revision": self.revision}

    def download(self, cache: Path | None = None) -> Path:
        """The file in the Hub cache (`cache`, else huggingface_hub's own), downloaded if needed."""
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_STRINGS
        try:
            from huggingface_hub import hf_hub_download  # noqa: PLC0415 - only pulling models needs it
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # noqa: PLC0415

            return Path(hf_hub_download(repo_id=self.repo, filename=self.file, revision=self.revision,
                                        cache_dir=str(cache) if cache else None, local_files_only=offline))
        except ImportError:
            raise PullError("huggingface-hub is not installed (pip install -r requirements.txt)") from None
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            why = "HF_HUB_OFFLINE is set and the file is not in the cache" if offline else \
                str(exc).strip().rstrip(".").splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PullError(f"cannot download {self.file} from huggingface.co/{self.repo}: {why}") from None

    @contextlib.contextmanager
    def open(self, cache: Path, progress: bool = False) -> Iterator[tuple[IO[bytes], int]]:
        """The file's bytes and size (huggingface_hub shows its own progress bar)."""
        path = self.download(cache / "huggingface")
        with open(path, "rb") as handle:
            yield handle, path.stat().st_size


def pull(repo: str, filename: str, folder: Path, *, sha256: str = "", revision: str | None = None) -> Path:
    """Download `filename` of the Hub repository `repo` into `folder`; return its path there.
    For `python -m api models pull <demo> <repo> <file>` (a file no catalog names); catalog entries
    are installed by `catalog.install`, which writes the same `.source.json`."""
    target = folder / Path(filename).name
    try:
        downloaded = HubFile(repo, filename, revision).download()
    except ValueError as exc:
        raise PullError(str(exc), "invalid") from None
    except PullError as exc:
        raise PullError(f"{exc}. Offline? Copy the file by hand to {target}") from None
    digest = sha256_file(downloaded)
    if sha256 and digest != sha256.lower():
        raise PullError(f"{filename}: sha256 is {digest}, expected {sha256}; not installed", "mismatch")
    folder.mkdir(parents=True, exist_ok=True)
    with open(downloaded, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    atomic_write(target.with_name(target.name + ".source.json"),
                 json.dumps({"repo": repo, "file": filename, "revision": revision, "sha256": digest,
                             "source": HubFile(repo, filename, revision).describe(),
                             "verified": bool(sha256), "size": target.stat().st_size}))
    return target
