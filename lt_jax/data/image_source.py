"""Image sources read on demand: pools too large to hold decoded are indexed, not loaded.

An `ImageSource` looks like a uint8 (N, H, W, C) array to the code that draws and labels a pool
(`len`, `shape`, `dtype`, `source[index_array]`), but decodes nothing until `read(indices)`:
indexing returns a lazy subset, so a draw over 200,000 PNG files costs no decoding, the
pseudo-label pass streams its batches through `read`, and only the images a stage keeps are
ever held in memory. Every image is fitted to the labeled data's (H, W, C) as it is read:

  size      an integer factor (96 -> 32) is the exact k x k box mean, rounded half up; any
            other size uses PIL's BOX filter (the aspect ratio is not kept).
  channels  greyscale, palette, RGBA, CMYK ... are converted with PIL to the labeled data's
            RGB or L (alpha dropped; RGB -> L is PIL's ITU-R 601-2 luma); 16-bit and float
            images are refused, since PIL would clip them. Files are converted as they are
            decoded, then resized; arrays (TFDS records) are resized, then converted.
"""

from __future__ import annotations

import abc
import concurrent.futures
import hashlib
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from lt_jax.errors import DataError

# PIL modes that convert losslessly enough to 8-bit RGB or L.
_EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                    "YCbCr")
_PIL_MODES = {1: "L", 3: "RGB"}
# Decoding PNG / JPEG releases the GIL: a few threads read a batch several times faster.
_READ_THREADS = min(8, os.cpu_count() or 1)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # Lower case; file names match in any case.


class ImageSource(abc.ABC):
  """N images of one (H, W, C), uint8, read on demand; subclasses implement `_read_one`."""

  dtype = np.dtype(np.uint8)
  ndim = 4
  _threaded = False  # Whether `read` decodes in a thread pool.

  def __init__(self, num_images: int, image_shape: Sequence[int], fingerprint: str):
    self._n = int(num_images)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.fingerprint = fingerprint  # Identifies the images and their order (provenance).

  def __len__(self) -> int:
    return self._n

  @property
  def shape(self) -> tuple[int, ...]:
    return (self._n, *self.image_shape)

  def __getitem__(self, indices) -> ImageSource:
    """A lazy subset (an index array or a boolean mask); nothing is decoded."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
      idx = np.flatnonzero(idx)
    return _Subset(self, _checked(idx, self._n))

  def read(self, indices) -> np.ndarray:
    """The images at `indices`, decoded and fitted: uint8 (len(indices), H, W, C)."""
    idx = _checked(np.asarray(indices), self._n)
    out = np.empty((len(idx), *self.image_shape), np.uint8)
    if len(idx) > 1 and self._threaded:
      with concurrent.futures.ThreadPoolExecutor(_READ_THREADS) as pool:
        for k, image in enumerate(pool.map(self._read_one, idx.tolist())):
          out[k] = image
    else:
      for k, i in enumerate(idx.tolist()):
        out[k] = self._read_one(i)
    return out

  @abc.abstractmethod
  def _read_one(self, i: int) -> np.ndarray:
    """Image i, decoded and fitted to `image_shape`."""


def _checked(idx: np.ndarray, n: int) -> np.ndarray:
  if idx.ndim != 1 or (len(idx) and not np.issubdtype(idx.dtype, np.integer)):
    raise IndexError(f"image sources take 1-D integer indices or a mask, got {idx.dtype} "
                     f"{idx.shape}")
  idx = idx.astype(np.int64)
  if len(idx) and (idx.min() < 0 or idx.max() >= n):
    raise IndexError(f"indices span {idx.min()}..{idx.max()}, outside the {n} images")
  return idx


class _Subset(ImageSource):
  def __init__(self, parent: ImageSource, idx: np.ndarray):
    super().__init__(len(idx), parent.image_shape, parent.fingerprint)
    self._parent, self._idx, self._threaded = parent, idx, parent._threaded

  def _read_one(self, i: int) -> np.ndarray:
    return self._parent._read_one(int(self._idx[i]))


class FileImages(ImageSource):
  """PNG / JPEG files decoded with PIL; `how` (what to download or fix) ends every error."""

  _threaded = True

  def __init__(self, paths: Sequence[str], image_shape: Sequence[int], *, root: str, how: str):
    digest = hashlib.sha256("\n".join(os.path.relpath(p, root) for p in paths).encode())
    super().__init__(len(paths), image_shape, f"files:{len(paths)}:{digest.hexdigest()[:16]}")
    self.paths = list(paths)
    self.how = how

  def _read_one(self, i: int) -> np.ndarray:
    return decode_file(self.paths[i], self.image_shape, self.how)

  def verify(self, log: Callable[[str], None] | None = None) -> None:
    """Checks every file before any training (see `check_files`)."""
    check_files(self.paths, self.how, log)


class RecordImages(ImageSource):
  """Random-access records (e.g. `tfds.data_source`) whose 'image' is fitted as it is read."""

  def __init__(self, records, image_shape: Sequence[int], *, fingerprint: str, where: str,
               how: str):
    super().__init__(len(records), image_shape, fingerprint)
    self._records, self._where, self._how = records, where, how

  def _read_one(self, i: int) -> np.ndarray:
    image = np.asarray(self._records[i]["image"])
    return fit(image, self.image_shape, f"{self._where}[{i}]", self._how)


def take(images, indices):
  """images[indices] (integer indices, not a mask) for an array or an ImageSource (lazy for the
  latter)."""
  return images[np.asarray(indices, dtype=np.int64)]


def concat(parts: Sequence) -> np.ndarray | ImageSource:
  """The images of `parts` in order: one array when every part is one, else a lazy source."""
  if not any(isinstance(p, ImageSource) for p in parts):
    return np.concatenate([np.asarray(p) for p in parts])
  return _Concat(parts)


class _Concat(ImageSource):
  _threaded = True

  def __init__(self, parts: Sequence):
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) != 1:
      raise ValueError(f"images of different shapes {sorted(shapes)} cannot be concatenated.")
    names = [p.fingerprint if isinstance(p, ImageSource) else f"array:{len(p)}" for p in parts]
    super().__init__(sum(len(p) for p in parts), shapes.pop(), " + ".join(names))
    self._parts = list(parts)
    self._starts = np.cumsum([0] + [len(p) for p in parts])

  def _read_one(self, i: int) -> np.ndarray:
    k = int(np.searchsorted(self._starts, i, side="right")) - 1
    part, j = self._parts[k], i - int(self._starts[k])
    return part.read([j])[0] if isinstance(part, ImageSource) else np.asarray(part[j])


def to_array(images) -> np.ndarray:
  """The images as one uint8 array (an ImageSource is decoded in full)."""
  if isinstance(images, ImageSource):
    return images.read(np.arange(len(images)))
  return np.asarray(images)


def read_rows(images, start: int, stop: int) -> np.ndarray:
  """Rows start..stop-1 of an array or an ImageSource."""
  if isinstance(images, ImageSource):
    return images.read(np.arange(start, stop))
  return images[start:stop]


# --- decoding and fitting -------------------------------------------------------------------


def decode_file(path: str, image_shape: Sequence[int], how: str) -> np.ndarray:
  """One PNG / JPEG file as uint8 (H, W, C) of `image_shape`."""
  from PIL import Image, UnidentifiedImageError

  channels = image_shape[-1]
  target = _pil_mode(channels, path, how)
  try:
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      converted = image.convert(target) if mode in _EIGHT_BIT_MODES else None
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    # PIL reports unreadable, truncated and unknown files as these; all mean the same here.
    raise DataError(f"{path} is not a readable PNG or JPEG image ({type(e).__name__}: {e}); "
                    f"{how}") from e
  if converted is None:
    raise DataError(f"{path} is a {mode!r} image (16-bit or float); only 8-bit images "
                    f"(greyscale, palette, RGB, RGBA, CMYK) can join the pool: save it as 8-bit "
                    f"PNG or JPEG, or remove it; {how}")
  array = np.asarray(converted, dtype=np.uint8)
  return fit(array.reshape(*array.shape[:2], channels), image_shape, path, how)


VERIFY_LOG_EVERY_S = 10.0


def check_files(paths: Sequence[str], how: str,
                log: Callable[[str], None] | None = None) -> None:
  """Raises one DataError listing every file that cannot be read as an 8-bit PNG or JPEG, so
  a broken file stops a run before its first stage trains, not after. Cheaper than decoding:
  each file's header and mode are read, a PNG's chunks and checksums verified, and a JPEG must
  end with its end-of-image marker (a truncated one does not). `log` gets progress lines for
  folders that take long."""
  start = last = time.perf_counter()
  bad: list[str] = []
  with concurrent.futures.ThreadPoolExecutor(_READ_THREADS) as pool:
    for done, problem in enumerate(pool.map(_file_problem, paths), start=1):
      if problem:
        bad.append(problem)
      now = time.perf_counter()
      if log is not None and now - last > VERIFY_LOG_EVERY_S:
        last = now
        rate = done / (now - start)
        log(f"  checked {done:,} / {len(paths):,} image files, {rate:,.0f} files/s, "
            f"ETA {int((len(paths) - done) / rate)} s")
  if bad:
    shown = "; ".join(bad[:5])
    raise DataError(f"{len(bad)} of the {len(paths):,} image files cannot be used: {shown}"
                    f"{' ...' if len(bad) > 5 else ''}. Replace or remove them; {how}")


def _file_problem(path: str) -> str | None:
  """What is wrong with one image file, or None."""
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as image:
      mode, kind = image.mode, image.format
      image.verify()  # PNG: every chunk and its CRC; other formats: the header.
    if kind == "JPEG":
      with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 64))
        if b"\xff\xd9" not in f.read():
          return f"{path} (a truncated JPEG: no end-of-image marker)"
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    return f"{path} ({type(e).__name__}: {str(e)[:80]})"
  if mode not in _EIGHT_BIT_MODES:
    return f"{path} (a {mode!r} image: 16-bit or float; save it as 8-bit)"
  return None


def _pil_mode(channels: int, where: str, how: str) -> str:
  if channels not in _PIL_MODES:
    raise DataError(f"{where}: the labeled images have {channels} channels; pool images can "
                    f"only be converted to 1 (greyscale) or 3 (RGB) channels; {how}")
  return _PIL_MODES[channels]


def fit(image: np.ndarray, image_shape: Sequence[int], where: str, how: str) -> np.ndarray:
  """A uint8 (h, w, c) image resized and converted to `image_shape` (see the module doc)."""
  height, width, channels = (int(s) for s in image_shape)
  if image.dtype != np.uint8 or image.ndim not in (2, 3):
    raise DataError(f"{where}: image is {image.dtype} {image.shape}, expected uint8 (H, W, C); "
                    f"{how}")
  image = image[..., None] if image.ndim == 2 else image
  if image.shape[:2] != (height, width):
    image = _resize(image, height, width)
  if image.shape[2] != channels:
    image = _convert(image, channels, where, how)
  return image


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  h, w, c = image.shape
  if h % height == 0 and w % width == 0 and h // height == w // width:
    k = h // height  # The exact box mean in integers, halves rounded up.
    total = image.reshape(height, k, width, k, c).sum(axis=(1, 3), dtype=np.int64)
    return ((total + k * k // 2) // (k * k)).astype(np.uint8)
  from PIL import Image

  planes = [np.asarray(Image.fromarray(image[..., j]).resize((width, height),
                                                           Image.Resampling.BOX))
            for j in range(c)]
  return np.stack(planes, axis=-1)


def _convert(image: np.ndarray, channels: int, where: str, how: str) -> np.ndarray:
  from PIL import Image

  source_mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(image.shape[2])
  if source_mode is None:
    raise DataError(f"{where}: a {image.shape[2]}-channel image cannot be converted to "
                    f"{channels} channels; {how}")
  pil = Image.fromarray(image[..., 0] if source_mode == "L" else image, source_mode)
  out = np.asarray(pil.convert(_pil_mode(channels, where, how)), dtype=np.uint8)
  return out.reshape(*out.shape[:2], channels)


def list_images(folder: str, accept: Callable[[str], bool] | None = None) -> list[str]:
  """Image files (.png, .jpg, .jpeg; any case) under `folder`, sorted by relative path; hidden
  files and folders are skipped. `accept(file_name)` filters further."""
  found = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in files:
      if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
        continue
      if accept is None or accept(name):
        found.append(os.path.join(root, name))
  return sorted(found, key=lambda p: os.path.relpath(p, folder).split(os.sep))
