"""`ImageFeed`: a job's images, downloaded and decoded ahead in threads while the model works.

The demo iterates images in order; meanwhile up to PREFETCH_IMAGES of the next ones are being
fetched and decoded by DOWNLOAD_WORKERS threads, so the GPU does not wait on the network. One bad
image (missing, corrupt, too large, refused) becomes a LoadedImage with an `error` and the feed
goes on: a job of 500 pages does not fail for one broken scan.

Decoding ahead is bounded by bytes, not by a count of images: a few kilobytes of PNG can decode
to hundreds of megabytes, so eight of them ahead would take a worker to gigabytes. Each image
reserves room in a `DecodeBudget` (from its header, before any pixel is decoded) and gives it
back when the demo asks for the next image; an image larger than the whole budget is decoded
only when the feed holds nothing else.

A demo whose model sees pages at a few hundred pixels need not pay for decoding 20-megapixel
photographs in full: inside `reduced_decoding(min_side)`, a JPEG at least twice that size is
decoded at the smallest DCT scale (1/2, 1/4, 1/8: libjpeg computes fewer pixels, nothing is
resized afterwards) that keeps its long side >= `min_side`. The `LoadedImage` says by how much
(`scale`, exact: full-resolution pixel = decoded pixel x scale), its full-resolution `size`, and
decodes the full image when something needs it (`full()`). The same block can limit how many
images are decoded at once (`threads`), so a CPU worker's model keeps its cores while downloads
still run on every DOWNLOAD_WORKERS thread.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import Config
from .fetch import DownloadError, Fetcher
from .sources import ImageSource

RGB_PIXEL_BYTES = 4  # Pillow keeps an RGB pixel in 32 bits
_ALPHA_FLATTEN_BYTES = 5  # a transparent image is flattened through an RGBA copy and its alpha band


class UnreadableImage(Exception):
    """The file is not an image Pillow can decode, or is too large to decode safely."""


@dataclass
class LoadedImage:
    source: ImageSource
    image: Image.Image | None  # RGB, fully loaded, EXIF orientation applied; None on error
    path: Path | None  # the local file it was decoded from
    error: str | None = None  # why `image` is None, in plain words
    # Set when `image` was decoded reduced (see `reduced_decoding`): a pixel of `image` is a
    # `scale` x `scale` square of the full-resolution image, whose upright (width, height) is
    # `size`; full-resolution x = x in `image` * scale + offset[0] (the offset is not 0 only on an
    # axis that EXIF orientation reversed, when the size is not a multiple of the scale).
    scale: int = 1
    size: tuple[int, int] = (0, 0)
    offset: tuple[int, int] = (0, 0)
    _full: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.image is not None and self.size == (0, 0):
            self.size = self.image.size

    def to_full(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """A box in the pixels of `image` → the same box in full-resolution pixels, inside the image."""
        s, (ox, oy), (w, h) = self.scale, self.offset, self.size
        return (min(max(x1 * s + ox, 0), w), min(max(y1 * s + oy, 0), h),
                min(max(x2 * s + ox, 0), w), min(max(y2 * s + oy, 0), h))

    def full(self) -> Image.Image:
        """The full-resolution image: `image` itself unless it was decoded reduced, else decoded
        now from `path` (not kept: the caller holds it as long as it needs it)."""
        if self.image is None:
            raise UnreadableImage(self.error or "no image")
        if self.scale == 1 or self._full is None:
            return self.image
        return self._full()


@dataclass(frozen=True)
class DecodeHint:
    min_side: int | None  # decode JPEGs reduced, keeping the long side at least this; None: full
    threads: int | None  # at most this many images decoded at once; None: every feed thread


FULL_DECODING = DecodeHint(None, None)
_HINT: ContextVar[DecodeHint | None] = ContextVar("decode_hint", default=None)


@contextmanager
def reduced_decoding(min_side: int | None, threads: int | None = None) -> Iterator[None]:
    """Feeds started in this block (a job's `images()` starts one at its first image) decode
    each JPEG whose long side is at least 2 x `min_side` at the smallest DCT scale that keeps it
    >= `min_side` (`LoadedImage.scale` > 1, `full()` for the whole), and decode at most `threads`
    images at once. For a demo whose model looks at a reduced page anyway: less decoding, and
    less of the CPU taken from the model."""
    token = _HINT.set(DecodeHint(min_side, threads))
    try:
        yield
    finally:
        _HINT.reset(token)


def configure_pillow(cfg: Config) -> None:
    """Process-wide Pillow settings, once at worker start: Pillow's own decompression-bomb limit
    follows MAX_IMAGE_PIXELS, and its warning (between 1x and 2x the limit) becomes an error."""
    Image.MAX_IMAGE_PIXELS = cfg.max_image_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def image_header(path: Path, cfg: Config) -> tuple[int, int, str, bool]:
    """(width, height, mode, transparent) of the image at `path`, from its header alone, so the
    room its pixels will take is known before they are decoded. Raises UnreadableImage, also when
    the pixel count is over MAX_IMAGE_PIXELS."""
    return image_header_and_format(path, cfg)[:4]  # type: ignore[return-value]


def image_header_and_format(path: Path, cfg: Config) -> tuple[int, int, str, bool, str]:
    """`image_header` and the file's format as Pillow names it ("JPEG", "PNG", ...)."""
    with _unreadable_as_error(), Image.open(path) as opened:
        _check_pixels(opened, cfg)
        return opened.width, opened.height, opened.mode, _transparent(opened), opened.format or ""


def decode_image(path: Path, cfg: Config) -> Image.Image:
    """The image at `path` as a loaded RGB image, upright (EXIF orientation applied); transparent
    areas become white. Raises UnreadableImage. The pixel count is checked from the header,
    before any pixel is decoded."""
    with _unreadable_as_error(), Image.open(path) as opened:
        _check_pixels(opened, cfg)
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)  # in place: no copy of a large image
        return _to_rgb(opened)


# EXIF orientation → (upright axes swapped, upright x reversed, upright y reversed), as
# ImageOps.exif_transpose turns the stored pixels
_ORIENTATION = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True),
                4: (False, False, True), 5: (True, False, False), 6: (True, True, False),
                7: (True, True, True), 8: (True, False, True)}


def decode_reduced(path: Path, cfg: Config, min_side: int) -> LoadedImage:
    """`decode_image`, but a JPEG whose long side is at least 2 x `min_side` is decoded at
    1/scale of its size (DCT scaling, scale 2, 4 or 8) with its long side still >= `min_side`;
    other images at scale 1. A LoadedImage without its source; raises UnreadableImage."""
    with _unreadable_as_error(), Image.open(path) as opened:
        _check_pixels(opened, cfg)
        width, height = opened.size
        scale = 1
        long_side = max(width, height)
        if opened.format == "JPEG" and long_side >= 2 * min_side:
            wanted = (math.ceil(width * min_side / long_side), math.ceil(height * min_side / long_side))
            drafted = opened.draft(opened.mode, wanted)
            if drafted is not None:
                scale = round(width / drafted[1][2])
        swapped, flip_x, flip_y = _ORIENTATION.get(opened.getexif().get(0x0112, 1), _ORIENTATION[1])
        opened.load()
        reduced = opened.size
        ImageOps.exif_transpose(opened, in_place=True)
        image = _to_rgb(opened)
    full = (height, width) if swapped else (width, height)
    small = (reduced[1], reduced[0]) if swapped else reduced
    offset = (full[0] - scale * small[0] if flip_x else 0, full[1] - scale * small[1] if flip_y else 0)
    return LoadedImage(None, image, path, scale=scale, size=full, offset=offset,  # type: ignore[arg-type]
                       _full=lambda: decode_image(path, cfg))


def reduced_size(width: int, height: int, image_format: str, min_side: int | None) -> tuple[int, int]:
    """The size `decode_reduced` gives an image of this size and format, for the decode budget."""
    if not min_side or image_format != "JPEG" or max(width, height) < 2 * min_side:
        return width, height
    scale = next(s for s in (8, 4, 2, 1) if max(width, height) // s >= min_side)
    return -(-width // scale), -(-height // scale)


def decode_bytes(width: int, height: int, mode: str, transparent: bool) -> int:
    """Bytes decoding such an image may hold at its peak: its pixels in their own mode, a turned
    copy of them (EXIF orientation), the RGB result and, for a transparent image, the RGBA copy
    and alpha band it is flattened through. An estimate from the header, for the budget."""
    per_pixel = 2 * pixel_bytes(mode) + RGB_PIXEL_BYTES + (_ALPHA_FLATTEN_BYTES if transparent else 0)
    return width * height * per_pixel


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel in Pillow's memory: 1 for 1/L/P, 2 for 16-bit modes, else 4 (Pillow pads
    RGB and two-band modes to 32 bits)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith(("I;16", "BGR;1")) else 4


def held_bytes(image: Image.Image) -> int:
    """Bytes the pixels of a loaded image take in memory."""
    return image.width * image.height * pixel_bytes(image.mode)


def _check_pixels(opened: Image.Image, cfg: Config) -> None:
    if opened.width * opened.height > cfg.max_image_pixels:
        raise UnreadableImage(f"{opened.width}x{opened.height} pixels, over the limit of "
                              f"{cfg.max_image_pixels} (MAX_IMAGE_PIXELS)")


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


@contextmanager
def _unreadable_as_error() -> Iterator[None]:
    """Pillow's ways of saying a file is not a usable image, as one UnreadableImage."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image format that can be read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise UnreadableImage(f"corrupt image ({exc})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if _transparent(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


class DecodeBudget:
    """Room, in bytes of decoded pixels, shared by the feed's threads. Room is granted in source
    order (turns): a later image never takes the room an earlier one waits for, so the image the
    demo waits on always gets decoded. An image larger than the whole budget gets it only when
    nothing else is held. `held`, `peak` and `waiting` are there to be observed."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0  # bytes reserved now
        self.peak = 0  # the most ever reserved at once
        self.waiting = 0  # threads waiting for their turn or for room
        self._turn = 0  # the next turn to be granted
        self._passed: set[int] = set()  # later turns given up without room (their image failed)
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self, turn: int, nbytes: int) -> bool:
        """Wait for `turn` and room for `nbytes`, then reserve them. False once closed."""
        with self._changed:
            self.waiting += 1
            self._changed.wait_for(lambda: self._closed or (self._turn == turn and self._fits(nbytes)))
            self.waiting -= 1
            if self._closed:
                return False
            self._reserve(nbytes)
            self._advance()
            return True

    def pass_turn(self, turn: int) -> None:
        """`turn` needs no room (its image failed before decoding): later turns need not wait for it.
        Does nothing for a turn already granted."""
        with self._changed:
            if turn == self._turn:
                self._advance()
            elif turn > self._turn:  # its predecessors still hold the turn: skipped when they pass
                self._passed.add(turn)

    def release(self, nbytes: int) -> None:
        """Give back `nbytes` (negative: take more, when a decoded image came out larger)."""
        with self._changed:
            self._reserve(-nbytes)
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiting thread; they get no room."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _fits(self, nbytes: int) -> bool:
        return nbytes == 0 or self.held == 0 or self.held + nbytes <= self.limit

    def _reserve(self, nbytes: int) -> None:
        self.held += nbytes
        self.peak = max(self.peak, self.held)

    def _advance(self) -> None:
        self._turn += 1
        while self._turn in self._passed:
            self._passed.remove(self._turn)
            self._turn += 1
        self._changed.notify_all()


class ImageFeed:
    """LoadedImage after LoadedImage, in source order, while the next ones load in a thread pool
    (DOWNLOAD_WORKERS threads, at most PREFETCH_IMAGES ahead, at most DECODE_AHEAD_BYTES of
    decoded pixels held: see `DecodeBudget`). Never raises for one image.
    `close()` (or leaving the `with` block) stops background work promptly: queued loads are
    dropped and a download under way stops at its next chunk."""

    def __init__(self, sources: list[ImageSource], fetcher: Fetcher, cfg: Config, hint: DecodeHint | None = None):
        """`hint`: how to decode (see `reduced_decoding`, whose block gives it when None)."""
        self.sources = sources
        self.fetcher = fetcher
        self.cfg = cfg
        self.hint = hint or _HINT.get() or FULL_DECODING
        self.ahead = max(1, cfg.prefetch_images)
        self.budget = DecodeBudget(cfg.decode_ahead_bytes)
        self._decoding = threading.BoundedSemaphore(self.hint.threads) if self.hint.threads else None
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, cfg.download_workers), thread_name_prefix="image-feed")

    def __iter__(self) -> Iterator[LoadedImage]:
        pending: deque[Future] = deque()
        upcoming = enumerate(self.sources)

        def top_up() -> None:
            while len(pending) < self.ahead and not self._stop.is_set():
                turn, source = next(upcoming, (None, None))
                if source is None or turn is None:
                    return
                try:
                    pending.append(self._pool.submit(self._load, turn, source))
                except RuntimeError:  # closed from another thread meanwhile
                    return

        try:
            top_up()
            while pending and not self._stop.is_set():
                current = pending.popleft()
                top_up()  # the next ones load while this one is waited for and used
                try:
                    item, nbytes = current.result()
                except CancelledError:  # closed from another thread
                    return
                yield item
                self.budget.release(nbytes)  # the demo asks for the next one: done with this one
        finally:
            self.close()

    def _load(self, turn: int, source: ImageSource) -> tuple[LoadedImage, int]:
        """The image of `source` and the bytes of budget it holds; its turn is always used or passed."""
        try:
            return self._load_in_turn(turn, source)
        finally:
            self.budget.pass_turn(turn)

    def _load_in_turn(self, turn: int, source: ImageSource) -> tuple[LoadedImage, int]:
        path = Path(source.path) if source.path else None
        try:
            if path is None:
                if not source.url:
                    return LoadedImage(source, None, None, "the image has neither a URL nor a file"), 0
                path = self.fetcher.fetch(source.url, kind="image", cancel=self._stop)
            elif not path.is_file():
                return LoadedImage(source, None, None, "the image file is missing"), 0
            return self._decode_in_budget(turn, source, path)
        except (DownloadError, UnreadableImage) as exc:
            return LoadedImage(source, None, path, str(exc)), 0
        except Exception as exc:  # noqa: BLE001 - one image never ends the feed
            return LoadedImage(source, None, path, f"cannot load the image: {exc}"), 0

    def _decode_in_budget(self, turn: int, source: ImageSource, path: Path) -> tuple[LoadedImage, int]:
        """Reserve the decoding peak (known from the header), decode, keep only what the result holds."""
        width, height, mode, transparent, image_format = image_header_and_format(path, self.cfg)
        min_side = self.hint.min_side
        peak = decode_bytes(*reduced_size(width, height, image_format, min_side), mode, transparent)
        if not self.budget.acquire(turn, peak):
            return LoadedImage(source, None, path, "the feed was closed"), 0
        try:
            with self._decoding or nullcontext():
                if min_side:
                    item = decode_reduced(path, self.cfg, min_side)
                    item.source = source
                else:
                    item = LoadedImage(source, decode_image(path, self.cfg), path)
        except BaseException:
            self.budget.release(peak)
            raise
        kept = held_bytes(item.image) if item.image is not None else 0
        self.budget.release(peak - kept)
        return item, kept

    def close(self) -> None:
        self._stop.set()
        self.budget.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
