"""Uploads written once: werkzeug spools every uploaded file to a temporary file, which /start
then copied into uploads/<tracking_id>/ — a second full write of every byte (on a 76 MB set of
photographs, most of a request's second). Here the spool file is made in the uploads folder
itself, so saving it is a hard link: no copy. The spool file is deleted when the request ends,
whether or not the upload was kept; one left by a killed process carries TEMP_PREFIX and is swept
with old uploads."""
from __future__ import annotations

import os
import tempfile
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app

from .storage import TEMP_PREFIX

SPOOL_IN_MEMORY_BYTES = 500 * 1024  # as werkzeug: smaller uploads stay in memory


class UploadRequest(Request):
    """Flask's request, spooling large uploaded files into DATA_FOLDER's uploads folder."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        if total_content_length is not None and total_content_length <= SPOOL_IN_MEMORY_BYTES:
            return BytesIO()
        folder: Path = current_app.extensions["api"].cfg.uploads_folder
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile("w+b", prefix=TEMP_PREFIX, dir=folder)


def save_upload(upload: Any, path: Path) -> None:
    """`upload` (werkzeug's FileStorage) at `path`: linked when it was spooled on the same disk,
    else written."""
    spool = getattr(upload.stream, "name", None)
    if isinstance(spool, str) and os.path.isabs(spool):
        upload.stream.flush()
        try:
            os.link(spool, path)
            return
        except OSError:
            pass  # another filesystem, or links refused: copy as before
    upload.save(path)
