"""`ImageFeed`: a job's images, downloaded and decoded ahead in threads while the model works.

The demo iterates images in order; meanwhile up to PREFETCH_IMAGES of the next ones are being
fetched and decoded by DOWNLOAD_WORKERS threads, so the GPU does not wait on the network. One bad
image (missing, corrupt, too large, refused) becomes a LoadedImage with an `error` and the feed
goes on: a job of 500 pages does not fail for one broken scan.
"""
from __future__ import annotations

import threading
import warnings
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import Config
from .fetch import DownloadError, Fetcher
from .sources import ImageSource


class UnreadableImage(Exception):
    """The file is not an image Pillow can decode, or is too large to decode safely."""


@dataclass
class LoadedImage:
    source: ImageSource
    image: Image.Image | None  # RGB, fully loaded, EXIF orientation applied; None on error
    path: Path | None  # the local file it was decoded from
    error: str | None = None  # why `image` is None, in plain words


def configure_pillow(cfg: Config) -> None:
    """Process-wide Pillow settings, once at worker start: Pillow's own decompression-bomb limit
    follows MAX_IMAGE_PIXELS, and its warning (between 1x and 2x the limit) becomes an error."""
    Image.MAX_IMAGE_PIXELS = cfg.max_image_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def decode_image(path: Path, cfg: Config) -> Image.Image:
    """The image at `path` as a loaded RGB image, upright (EXIF orientation applied); transparent
    areas become white. Raises UnreadableImage. The pixel count is checked from the header,
    before any pixel is decoded."""
    try:
        with Image.open(path) as opened:
            pixels = opened.width * opened.height
            if pixels > cfg.max_image_pixels:
                raise UnreadableImage(f"{opened.width}x{opened.height} pixels, over the limit of "
                                      f"{cfg.max_image_pixels} (MAX_IMAGE_PIXELS)")
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image format that can be read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise UnreadableImage(f"corrupt image ({exc})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


class ImageFeed:
    """LoadedImage after LoadedImage, in source order, while the next ones load in a thread pool
    (DOWNLOAD_WORKERS threads, at most PREFETCH_IMAGES ahead). Never raises for one image.
    `close()` (or leaving the `with` block) stops background work promptly: queued loads are
    dropped and a download under way stops at its next chunk."""

    def __init__(self, sources: list[ImageSource], fetcher: Fetcher, cfg: Config):
        self.sources = sources
        self.fetcher = fetcher
        self.cfg = cfg
        self.ahead = max(1, cfg.prefetch_images)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, cfg.download_workers), thread_name_prefix="image-feed")

    def __iter__(self) -> Iterator[LoadedImage]:
        pending: deque[Future] = deque()
        upcoming = iter(self.sources)

        def top_up() -> None:
            while len(pending) < self.ahead and not self._stop.is_set():
                source = next(upcoming, None)
                if source is None:
                    return
                try:
                    pending.append(self._pool.submit(self._load, source))
                except RuntimeError:  # closed from another thread meanwhile
                    return

        try:
            top_up()
            while pending and not self._stop.is_set():
                current = pending.popleft()
                top_up()  # the next ones load while this one is waited for and used
                try:
                    item = current.result()
                except CancelledError:  # closed from another thread
                    return
                yield item
        finally:
            self.close()

    def _load(self, source: ImageSource) -> LoadedImage:
        path = Path(source.path) if source.path else None
        try:
            if path is None:
                if not source.url:
                    return LoadedImage(source, None, None, "the image has neither a URL nor a file")
                path = self.fetcher.fetch(source.url, kind="image", cancel=self._stop)
            elif not path.is_file():
                return LoadedImage(source, None, None, "the image file is missing")
            return LoadedImage(source, decode_image(path, self.cfg), path)
        except (DownloadError, UnreadableImage) as exc:
            return LoadedImage(source, None, path, str(exc))
        except Exception as exc:  # noqa: BLE001 - one image never ends the feed
            return LoadedImage(source, None, path, f"cannot load the image: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "ImageFeed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
