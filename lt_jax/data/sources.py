"""Dataset formats: the files datasets are published in (or TFDS), read into uint8 NHWC arrays.

Which dataset uses which format, with its classes, statistics and folder, is the registry's
knowledge (`data/datasets.py`); this module only finds and reads files. Every reader returns the
same `Splits`, so that the long-tail subsetting, augmentation and training code never see a file
format. Missing or malformed files raise `DataError` naming the file that was expected, where,
and how to get it, so that a run fails before any work starts.

Formats, each a `find_*` (cheap: are the files there?) and a `read_*` pair:
  CIFAR python-pickle archive folders (cifar-10-batches-py/, cifar-100-python/)
  SVHN's train_32x32.mat, test_32x32.mat and, when present, extra_32x32.mat
  IDX files, gzipped or plain (Fashion-MNIST; Debian: apt-get install dataset-fashion-mnist)
  scikit-learn's bundled 8x8 digits (no download), split 70/30 stratified
  user arrays in an .npz: x_train, y_train, x_test, y_test
  a user's image folder: train/<class>/*.png|jpg, optionally test/<class>/
  TFDS datasets through `tfds.data_source`, which needs no TensorFlow but a dataset prepared in
  array_record format.

A reader is called as `read(spec, location, options)`: `spec` is the dataset's registry entry
(its classes, layout, TFDS name), `location` what its finder returned, `options` the per-run
options the entry accepts.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lt_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, C) uint8, NHWC.
  labels: np.ndarray  # (N,) int64.


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  test: Split
  num_classes: int
  mean: tuple[float, ...]  # Per-channel normalisation mean in [0, 1] units.
  std: tuple[float, ...]
  extra: Split | None = None  # SVHN's extra split when present (an unlabeled pool); else None.
  val: Split | None = None  # A validation split of the data's own (an image folder's val/).


@dataclasses.dataclass(frozen=True)
class Splits:
  """What a reader found: the splits, and the classes where the data itself defines them."""
  train: Split
  test: Split
  extra: Split | None = None
  num_classes: int | None = None  # Set by readers whose labels define the classes (npz).
  val: Split | None = None  # A validation split the data brings (an image folder's val/).


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a file-based dataset lives: its folder name, required files and how to get them."""
  what: str  # Human description of the folder, used in error messages.
  subfolder: str  # Archive folder name; data_dir may be this folder or its parent.
  files: tuple[str, ...]  # Required file names.
  how: str  # How to get the files, appended to every error message.
  gz_ok: bool = False  # Whether each file may also be present as `<name>.gz`.


_DIGITS_TEST_FRACTION = 0.3
_DIGITS_SEED = 0


# --- finding the files ------------------------------------------------------------------


def find_layout(spec: Any, data_dir: str | None, options: Mapping[str, Any]) -> str:
  """The folder holding all of the spec's `layout` files: data_dir (else the spec's default
  folder) itself or its archive subfolder."""
  del options
  layout = spec.layout
  root = os.path.expanduser(data_dir or spec.default_dir)
  for folder in (root, os.path.join(root, layout.subfolder)):
    present = [f for f in layout.files if _find_file(folder, f, layout.gz_ok)]
    if not present:
      continue
    missing = [f for f in layout.files if f not in present]
    if missing:
      raise DataError(f"expected {missing[0]!r} in {folder} (part of {layout.what}) but it is "
                      f"missing; {layout.how}")
    return folder
  raise DataError(f"expected {layout.what} under {root}; {layout.how}")


def find_bundled(spec: Any, data_dir: str | None, options: Mapping[str, Any]) -> None:
  """Data shipped inside an installed package: nothing to find."""
  del spec, data_dir, options


def find_npz(spec: Any, data_dir: str | None, options: Mapping[str, Any]) -> str:
  """The .npz at options['path'] (else data_dir), checked to hold the four arrays."""
  del spec
  path = _npz_path(options.get("path"), data_dir)
  _check_npz_keys(path)
  return path


def npz_channels(path: str) -> int:
  """Channels of an .npz's training images, read from the array header alone."""
  try:
    with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as f:
      version = np.lib.format.read_magic(f)
      read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
      shape = read(f)[0]
  except Exception as e:  # Not a zip, no x_train, a damaged header: all unreadable here.
    raise DataError(f"{path}: cannot read the shape of 'x_train' ({type(e).__name__}: {e}); "
                    f"{_NPZ_HOW}") from e
  return shape[3] if len(shape) == 4 else 1


def _expand(path: str | None) -> str | None:
  return os.path.expanduser(path) if path else None


def _find_file(folder: str, file_name: str, gz_ok: bool) -> str | None:
  """The path of `file_name` in `folder` (plain preferred, then .gz when allowed), or None."""
  names = (file_name, file_name + ".gz") if gz_ok else (file_name,)
  for candidate in names:
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  return None


def _read_bytes(path: str, how: str) -> bytes:
  """The file's bytes, gunzipped when it starts with the gzip magic number."""
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] != b"\x1f\x8b":
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} is a corrupt or truncated gzip file ({e}); {how}") from e


def _make_split(images: np.ndarray, labels: np.ndarray) -> Split:
  return Split(np.ascontiguousarray(images, dtype=np.uint8),
               np.ascontiguousarray(labels, dtype=np.int64))


def _concat(splits: Sequence[Split]) -> Split:
  return Split(np.concatenate([s.images for s in splits]),
               np.concatenate([s.labels for s in splits]))


def channel_stats(images, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel population mean / std in [0, 1] units, via 256-bin histograms (no float copy);
  an ImageSource is read `chunk` images at a time, with the same result as its array."""
  from lt_jax.data import image_source

  values = np.arange(256, dtype=np.float64) / 255.0
  counts = np.zeros((images.shape[-1], 256), np.int64)
  for start in range(0, len(images), chunk):
    rows = image_source.read_rows(images, start, min(start + chunk, len(images)))
    for c in range(images.shape[-1]):
      counts[c] += np.bincount(rows[..., c].ravel(), minlength=256)
  means, stds = [], []
  for c in range(images.shape[-1]):
    hist = counts[c].astype(np.float64)
    mean = float(hist @ values / hist.sum())
    means.append(mean)
    stds.append(float(np.sqrt(hist @ (values - mean) ** 2 / hist.sum())))
  return tuple(means), tuple(stds)


# --- CIFAR ------------------------------------------------------------------------------


def _read_cifar_pickle(path: str, how: str) -> dict:
  """One CIFAR batch; the archives were pickled by Python 2, hence encoding='bytes'.

  Unpickling runs code from the file: only point data_dir at archives you trust.
  """
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
  except Exception as e:  # Corrupt pickles raise many kinds of errors; all mean the same here.
    raise DataError(f"{path} is not a readable CIFAR python pickle ({type(e).__name__}: {e}); "
                    f"{how}") from e
  if not isinstance(batch, dict):
    raise DataError(f"{path} holds a {type(batch).__name__}, expected a CIFAR batch dict; {how}")
  return batch


def _cifar_batch(path: str, label_key: bytes, how: str) -> Split:
  """A batch's rows (3072 bytes: R, G, B planes of 32x32) as NHWC images and labels."""
  batch = _read_cifar_pickle(path, how)
  for key in (b"data", label_key):
    if key not in batch:
      raise DataError(f"{path} has no key {key!r} (keys: {sorted(batch)}); {how}")
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[label_key])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072); "
                    f"{how}")
  if labels.shape != (len(data),):
    raise DataError(f"{path}: {label_key!r} has shape {labels.shape}, expected ({len(data)},); "
                    f"{how}")
  return _make_split(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels)


def read_cifar10(spec: Any, folder: str, options: Mapping[str, Any]) -> Splits:
  del options
  return _read_cifar(folder, [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels",
                     spec.num_classes, spec.layout.how)


def read_cifar100(spec: Any, folder: str, options: Mapping[str, Any]) -> Splits:
  del options
  return _read_cifar(folder, ["train"], "test", b"fine_labels", spec.num_classes,
                     spec.layout.how)


def _read_cifar(folder: str, train_files: Sequence[str], test_file: str, label_key: bytes,
                num_classes: int, how: str) -> Splits:
  def read(file_name: str) -> Split:  # Each file's labels checked, so an error names its file.
    path = os.path.join(folder, file_name)
    batch = _cifar_batch(path, label_key, how)
    _check_label_range(batch.labels, num_classes, path, how)
    return batch

  return Splits(_concat([read(f) for f in train_files]), read(test_file))


def _check_label_range(labels: np.ndarray, num_classes: int, where: str, how: str) -> None:
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise DataError(f"{where}: labels span {labels.min()}..{labels.max()}, expected "
                    f"0..{num_classes - 1}; {how}")


# --- SVHN -------------------------------------------------------------------------------


def _read_svhn_mat(path: str, how: str) -> Split:
  """'X' (32, 32, 3, N) uint8 and 'y' (N, 1) with 10 for digit 0, as NHWC and labels 0..9."""
  from scipy import io as sio

  try:
    mat = sio.loadmat(path, variable_names=["X", "y"])
  except Exception as e:  # scipy raises several kinds (MatReadError, ValueError, OSError, ...).
    raise DataError(f"{path} is not a readable MATLAB file ({type(e).__name__}: {e}); "
                    f"{how}") from e
  if "X" not in mat or "y" not in mat:
    raise DataError(f"{path} lacks the variables 'X' and 'y'; {how}")
  x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
  if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
    raise DataError(f"{path}: 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N); {how}")
  if len(y) != x.shape[3]:
    raise DataError(f"{path}: 'y' has {len(y)} labels for {x.shape[3]} images; {how}")
  labels = y.astype(np.int64)
  labels[labels == 10] = 0
  _check_label_range(labels, 10, path, how)
  return _make_split(x.transpose(3, 0, 1, 2), labels)


def read_svhn(spec: Any, folder: str, options: Mapping[str, Any]) -> Splits:
  """train and test, and extra (531k images) when present unless options['extra'] is False."""
  how = spec.layout.how
  train = _read_svhn_mat(os.path.join(folder, "train_32x32.mat"), how)
  test = _read_svhn_mat(os.path.join(folder, "test_32x32.mat"), how)
  extra_path = os.path.join(folder, "extra_32x32.mat")
  with_extra = bool(options.get("extra", True)) and os.path.isfile(extra_path)
  return Splits(train, test, _read_svhn_mat(extra_path, how) if with_extra else None)


# --- IDX (Fashion-MNIST) ------------------------------------------------------------------

_IDX_UBYTE = 0x08


def _read_idx(path: str, ndim: int, how: str) -> np.ndarray:
  """An IDX array: magic 0x00 0x00 <dtype> <ndim>, big-endian uint32 dims, then the data."""
  raw = _read_bytes(path, how)
  if len(raw) < 4 or raw[:2] != b"\x00\x00":
    raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}); {how}")
  if raw[2] != _IDX_UBYTE or raw[3] != ndim:
    raise DataError(f"{path}: IDX header has dtype code 0x{raw[2]:02x} and {raw[3]} dims, "
                    f"expected 0x08 (unsigned byte) and {ndim} dims; {how}")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path} is truncated inside its IDX header; {how}")
  dims = struct.unpack(f">{ndim}I", raw[4:header])
  expected = header + int(np.prod(dims))
  if len(raw) != expected:
    raise DataError(f"{path} holds {len(raw)} bytes but its IDX header (dims {dims}) implies "
                    f"{expected} (truncated or corrupt); {how}")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_idx_pair(folder: str, prefix: str, num_classes: int, how: str) -> Split:
  """`<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` as (N, H, W, 1) and labels."""
  image_path = _find_file(folder, f"{prefix}-images-idx3-ubyte", gz_ok=True)
  label_path = _find_file(folder, f"{prefix}-labels-idx1-ubyte", gz_ok=True)
  images = _read_idx(image_path, 3, how)
  labels = _read_idx(label_path, 1, how)
  if len(images) != len(labels):
    raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} "
                    f"labels; {how}")
  _check_label_range(labels, num_classes, label_path, how)
  return _make_split(images[..., None], labels)


def read_idx(spec: Any, folder: str, options: Mapping[str, Any]) -> Splits:
  """The MNIST file naming: train-* and t10k-* image / label pairs."""
  del options
  how = spec.layout.how
  return Splits(_read_idx_pair(folder, "train", spec.num_classes, how),
                _read_idx_pair(folder, "t10k", spec.num_classes, how))


# --- scikit-learn digits ----------------------------------------------------------------


def _stratified_split(labels: np.ndarray, test_fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Per class (ascending), one shared RandomState permutes the indices and the first
  round(test_fraction * n_class) go to test; each side is sorted so the order is stable."""
  rng = np.random.RandomState(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(test_fraction * len(idx)))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits: pixel values 0..16 [1797, 8, 8] (float64) and labels [1797].

  Read from the CSV file inside the installed scikit-learn package, without importing it:
  importing scikit-learn takes about a second, which every run.py start and test process paid.
  `load_digits` reads the same file; it is the fall-back where the file has moved.
  """
  spec = importlib.util.find_spec("sklearn")
  folders = list(spec.submodule_search_locations or []) if spec is not None else []
  for folder in folders:
    path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      table = np.loadtxt(path, delimiter=",")
      return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
  from sklearn.datasets import load_digits

  bunch = load_digits()
  return bunch.images, np.asarray(bunch.target, dtype=np.int64)


def read_digits(spec: Any, location: None, options: Mapping[str, Any]) -> Splits:
  """scikit-learn's 1797 8x8 digits (0..16) as uint8 round(v * 255 / 16), split 70/30.

  There is no official split: `_stratified_split` with RandomState(0) makes one (1258 train,
  539 test).
  """
  del spec, location, options
  pixels, labels = digits_arrays()
  images = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]
  train_idx, test_idx = _stratified_split(labels, _DIGITS_TEST_FRACTION, _DIGITS_SEED)
  return Splits(_make_split(images[train_idx], labels[train_idx]),
                _make_split(images[test_idx], labels[test_idx]))


# --- user arrays (.npz) -----------------------------------------------------------------

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_HOW = ("save one with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) "
            "(images uint8 NHWC or NHW, labels ints 0..C-1) and set dataset.npz_path")


def _npz_path(path: str | None, data_dir: str | None) -> str:
  chosen = path or data_dir
  if not chosen:
    raise DataError(f"dataset 'npz' needs the path of an .npz file; {_NPZ_HOW}")
  chosen = os.path.expanduser(chosen)
  if not os.path.isfile(chosen):
    raise DataError(f"expected an .npz file with {', '.join(_NPZ_KEYS)} at {chosen}; {_NPZ_HOW}")
  return chosen


def _open_npz(path: str) -> Any:
  """The lazily-read archive (np.lib.npyio.NpzFile); a .npy or non-numpy file is a DataError."""
  try:
    archive = np.load(path, allow_pickle=False)
  except Exception as e:  # Not a zip, truncated zip, a pickle, ...: all mean "not our npz".
    raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}); "
                    f"{_NPZ_HOW}") from e
  if not hasattr(archive, "files"):
    raise DataError(f"{path} holds a single array, expected an .npz archive; {_NPZ_HOW}")
  return archive


def _check_npz_keys(path: str) -> None:
  with _open_npz(path) as archive:
    missing = [k for k in _NPZ_KEYS if k not in archive.files]
    if missing:
      raise DataError(f"{path} lacks the array(s) {', '.join(missing)} (has "
                      f"{', '.join(archive.files) or 'none'}); {_NPZ_HOW}")


def _npz_images(x: np.ndarray, key: str, path: str) -> np.ndarray:
  if x.dtype != np.uint8:
    raise DataError(f"{path}: {key!r} is {x.dtype}, expected uint8; convert it to uint8 0..255 "
                    f"(e.g. np.round(x * 255).astype(np.uint8) for floats in [0, 1])")
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise DataError(f"{path}: {key!r} has shape {x.shape}, expected (N, H, W, C) or (N, H, W)")
  check_channels_last(x.shape, f"{path}: {key!r}")
  return x


IMAGE_CHANNELS = (1, 3, 4)  # Grey, RGB, RGBA: what the last axis of NHWC images usually holds.


def check_channels_last(shape: Sequence[int], where: str) -> None:
  """Refuses 4-D image arrays that cannot be (N, H, W, C). Channel-first arrays (N, C, H, W)
  would otherwise train as images C pixels high with W channels: (N, 3, 8, 8) reached 16.7%
  with no warning. Other channel counts (2, multispectral bands) pass when the last axis is
  no larger than the image's sides."""
  n, h, w, c = (int(d) for d in shape)
  if c in IMAGE_CHANNELS:
    return
  if h in IMAGE_CHANNELS:
    raise DataError(f"{where} has shape {(n, h, w, c)}, which is channel-first (N, C, H, W) with "
                    f"{h} channels; lt_jax reads (N, H, W, C): store x.transpose(0, 2, 3, 1), "
                    f"shape {(n, w, c, h)}.")
  if c > max(h, w):
    raise DataError(f"{where} has shape {(n, h, w, c)}: as (N, H, W, C) its {c} channels outnumber "
                    f"its {h} x {w} pixels, so its axes are in another order; store it as "
                    "(N, H, W, C) or (N, H, W) for grey images.")


def _npz_labels(y: np.ndarray, key: str, path: str, n: int) -> np.ndarray:
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{path}: {key!r} is {y.dtype}, expected integer class ids 0..C-1")
  y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
  if y.shape != (n,):
    raise DataError(f"{path}: {key!r} has shape {y.shape}, expected ({n},) to match the images")
  return y.astype(np.int64)


def _npz_array(archive: Any, key: str, path: str) -> np.ndarray:
  """One array of the archive; an object array or a damaged member is a DataError."""
  try:
    return archive[key]
  except Exception as e:  # Pickled objects, a truncated or corrupt member (zlib, EOF, ...).
    raise DataError(f"{path}: the array {key!r} cannot be read ({type(e).__name__}: {e}); "
                    f"{_NPZ_HOW}") from e


def read_npz(spec: Any, path: str, options: Mapping[str, Any]) -> Splits:
  """The four arrays; the classes are options['num_classes'], else the largest label + 1."""
  del spec
  num_classes = options.get("num_classes")
  with _open_npz(path) as archive:
    x_train = _npz_images(_npz_array(archive, "x_train", path), "x_train", path)
    x_test = _npz_images(_npz_array(archive, "x_test", path), "x_test", path)
    y_train = _npz_labels(_npz_array(archive, "y_train", path), "y_train", path, len(x_train))
    y_test = _npz_labels(_npz_array(archive, "y_test", path), "y_test", path, len(x_test))
  if x_train.shape[1:] != x_test.shape[1:]:
    raise DataError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are "
                    f"{x_test.shape[1:]}; both need the same (H, W, C)")
  for key, y in (("x_train", y_train), ("x_test", y_test)):
    if len(y) == 0:
      raise DataError(f"{path}: {key} is empty; {_NPZ_HOW}")
  inferred = num_classes is None
  if inferred:
    num_classes = int(max(y_train.max(), y_test.max())) + 1
  for key, y in (("y_train", y_train), ("y_test", y_test)):
    _check_label_range(y, num_classes, f"{path}: {key!r}", f"labels must be ints 0..C-1 with C = "
                       f"num_classes ({num_classes}); relabel them or pass num_classes")
  absent = np.flatnonzero(np.bincount(y_train, minlength=num_classes) == 0) if inferred else []
  if len(absent):  # A gap in the ids (say 0..8 and 12) would make classes of nothing.
    raise DataError(
        f"{path}: the labels run up to {num_classes - 1}, so there are {num_classes} classes, "
        f"but 'y_train' has no image of class {', '.join(map(str, absent[:10]))}"
        f"{' ...' if len(absent) > 10 else ''}; labels must be 0..C-1 with every class in "
        "y_train: relabel them (np.unique(y, return_inverse=True)[1]).")
  return Splits(_make_split(x_train, y_train), _make_split(x_test, y_test),
                num_classes=num_classes)


# --- TFDS -------------------------------------------------------------------------------


def _tfds_how(tfds_name: str, data_dir: str | None) -> str:
  where = data_dir or "~/tensorflow_datasets"
  return (f"run `tfds build {tfds_name} --file_format=array_record --data_dir={where}` (on a "
          f"machine with internet; copy {where}/{tfds_name} here if built elsewhere), or set "
          f"dataset.source='files'")


def _tfds_missing(tfds_name: str, data_dir: str | None) -> str:
  where = data_dir or "TFDS's default folder (~/tensorflow_datasets or $TFDS_DATA_DIR)"
  return (f"expected the TFDS dataset {tfds_name!r} prepared in array_record format under "
          f"{where}; {_tfds_how(tfds_name, data_dir)}")


def check_tfds(spec: Any, data_dir: str | None) -> None:
  """Raises DataError unless the spec's TFDS dataset is prepared for random access."""
  _check_tfds_prepared(spec.tfds_name, _expand(data_dir))


def _check_tfds_prepared(tfds_name: str, data_dir: str | None) -> None:
  """Raises DataError unless `tfds_name` is prepared under data_dir in a random-access format."""
  import tensorflow_datasets as tfds

  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if not builder.is_prepared():
    raise DataError(_tfds_missing(tfds_name, data_dir))
  random_access = tfds.core.file_adapters.FileFormat.with_random_access()
  if not builder.info.available_file_formats() & random_access:
    raise DataError(f"the TFDS dataset {tfds_name!r} at {builder.data_dir} is prepared as "
                    f"{builder.info.file_format}, which has no random access; "
                    f"{_tfds_how(tfds_name, data_dir)}")


def _read_tfds_split(tfds_name: str, split: str, data_dir: str | None) -> Split:
  """One split via `tfds.data_source` (random-access ArrayRecord, no TensorFlow needed).

  Reads record by record: `__getitems__` would batch the reads, but tfds.testing.mock_data
  cannot drive it, and decoding the images dominates either way.
  """
  import tensorflow_datasets as tfds

  try:
    records = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
  except (NotImplementedError, ValueError, OSError, KeyError) as e:
    # Unprepared or non-random-access data surfaces as NotImplementedError, a missing split or
    # folder as ValueError / OSError, a default folder without the prepared splits as
    # KeyError; the builder says which, else report tfds's own words.
    _check_tfds_prepared(tfds_name, data_dir)
    first_line = str(e).splitlines()[0] if str(e) else ""
    raise DataError(f"{_tfds_missing(tfds_name, data_dir)} ({type(e).__name__}: "
                    f"{first_line})") from e
  examples = [records[i] for i in range(len(records))]
  if not examples:
    raise DataError(f"the TFDS split {tfds_name}/{split} is empty; "
                    f"{_tfds_how(tfds_name, data_dir)}")
  if "id" in examples[0]:
    # CIFAR's records carry their position in the archive TFDS built from ("train_00042"),
    # while the files store them in a shuffled order: back to the archive's order, so the
    # long-tailed subset's indices pick the same images as from the archive files.
    ids = [ex["id"] for ex in examples]
    examples = [examples[i] for i in sorted(range(len(ids)), key=lambda i: _text(ids[i]))]
  images = np.stack([np.asarray(ex["image"]) for ex in examples])
  labels = np.asarray([ex["label"] for ex in examples])
  return _make_split(images, labels)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def read_tfds(spec: Any, data_dir: str | None, options: Mapping[str, Any]) -> Splits:
  """train and test; extra too where the spec offers it and options['extra'] is not False."""
  data_dir = _expand(data_dir)
  read = lambda split: _read_tfds_split(spec.tfds_name, split, data_dir)  # noqa: E731
  with_extra = "extra" in spec.options and bool(options.get("extra", True))
  return Splits(read("train"), read("test"), read("extra") if with_extra else None)


# --- a user's image folder --------------------------------------------------------------

FOLDER_HOW = ("lay the images out as <dataset.data_dir>/train/<class>/*.png (or .jpg), one "
              "folder per class, and optionally <dataset.data_dir>/test/<class>/ and val/<class>/ "
              "the same way (without test/, dataset.test_fraction of each class is held out)")
_GREY_MODES = ("1", "L", "LA", "La")


def find_image_folder(spec: Any, data_dir: str | None, options: Mapping[str, Any]) -> str:
  """The folder holding train/<class>/ (checked from the folder names alone)."""
  del spec, options
  if not data_dir:
    raise DataError(f"dataset 'image_folder' needs dataset.data_dir; {FOLDER_HOW}.")
  root = os.path.abspath(os.path.expanduser(data_dir))
  train = os.path.join(root, "train")
  if not os.path.isdir(train):
    raise DataError(f"{train} is not a folder; {FOLDER_HOW}.")
  if not _class_folders(train):
    raise DataError(f"{train} holds no class folders; {FOLDER_HOW}.")
  return root


def folder_has_val(data_dir: str | None) -> bool:
  """Whether an image folder brings its own validation split (a val/ folder)."""
  return bool(data_dir) and os.path.isdir(os.path.join(os.path.expanduser(data_dir), "val"))


def _class_folders(folder: str) -> list[str]:
  return sorted(d for d in os.listdir(folder)
                if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))


def folder_files(root: str) -> tuple[list[str], dict[str, tuple[list[str], np.ndarray]]]:
  """(class names, {split: (image paths, int64 labels)}) of an image folder. The classes are
  train/'s folders sorted by name (class id = position), so they never depend on the order
  the file system lists them in; `test` and `val` are present when their folders are. Images
  sit in their class folder or below it; stray images, test or val classes without training
  images and classes without images are named."""
  from lt_jax.data import image_source

  classes = _class_folders(os.path.join(root, "train"))
  out = {}
  for split in ("train", "test", "val"):
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
      continue
    stray = sorted(n for n in os.listdir(folder) if not n.startswith(".")
                   and n.lower().endswith(image_source.IMAGE_SUFFIXES))
    if stray:
      raise DataError(f"{folder} holds {len(stray)} images outside any class folder (e.g. "
                      f"{stray[0]}); {FOLDER_HOW}.")
    unknown = sorted(set(_class_folders(folder)) - set(classes))
    if unknown:
      raise DataError(f"{folder} has class folders that train/ lacks ({', '.join(unknown[:5])})"
                      "; every class needs training images.")
    paths, labels = [], []
    for label, name in enumerate(classes):
      sub = os.path.join(folder, name)
      found = image_source.list_images(sub) if os.path.isdir(sub) else []
      if split == "train" and not found:
        raise DataError(f"{sub} holds no .png or .jpg image; every class needs training "
                        "images (remove the folder to drop the class).")
      paths += found
      labels += [label] * len(found)
    out[split] = (paths, np.asarray(labels, np.int64))
  return classes, out


def _headers(paths: Sequence[str]) -> tuple[set[tuple[int, int]], bool]:
  """The (width, height) sizes of the images, and whether every one is greyscale; reads each
  file's header only."""
  from PIL import Image, UnidentifiedImageError

  sizes, grey = set(), True
  for path in paths:
    try:
      with Image.open(path) as image:
        sizes.add(image.size)
        grey = grey and image.mode in _GREY_MODES
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
      raise DataError(f"{path} is not a readable PNG or JPEG image ({type(e).__name__}: {e}); "
                      "replace or remove it.") from e
  return sizes, grey


def folder_image_shape(paths: Sequence[str], image_size: int | None) -> tuple[int, int, int]:
  """(H, W, C) the images are read at: their own size when they all share one, else
  image_size x image_size (each resized, not cropped); one channel when every image is
  greyscale, else three (RGB)."""
  sizes, grey = _headers(paths)
  channels = 1 if grey else 3
  if len(sizes) == 1:
    width, height = sizes.pop()
    return height, width, channels
  if not image_size:
    raise DataError(f"the images come in {len(sizes)} sizes (e.g. {sorted(sizes)[:3]} as "
                    "width x height); set dataset.image_size to read them all at one square "
                    "size.")
  return int(image_size), int(image_size), channels


def read_image_folder(spec: Any, root: str, options: Mapping[str, Any]) -> Splits:
  """Every image of train/ (and test/, else a stratified dataset.test_fraction of train/,
  drawn with RandomState(0); and val/ where present) decoded into uint8 arrays; every file is
  checked first, and all broken ones are named at once."""
  from lt_jax.data import image_source

  lazy = image_folder_sources(spec, root, options)

  def decoded(split: Split | None) -> Split | None:
    return None if split is None else _make_split(image_source.to_array(split.images),
                                                  split.labels)
  return Splits(decoded(lazy.train), decoded(lazy.test), num_classes=lazy.num_classes,
                val=decoded(lazy.val))


def image_folder_sources(spec: Any, root: str, options: Mapping[str, Any]) -> Splits:
  """`read_image_folder`'s splits with their images as `image_source.FileImages`, decoded
  only when read (dataset.feed='host': a folder too large to hold decoded)."""
  from lt_jax.data import image_source

  del spec
  classes, found = folder_files(root)
  paths, labels = found["train"]
  if "test" in found:
    test_paths, test_labels = found["test"]
  else:
    fraction = float(options.get("test_fraction") or 0.0)
    train_idx, test_idx = _stratified_split(labels, fraction, seed=0)
    test_paths, test_labels = [paths[i] for i in test_idx], labels[test_idx]
    paths, labels = [paths[i] for i in train_idx], labels[train_idx]
  if not len(test_labels):
    raise DataError(f"{root} gives no test image: add test/<class>/ folders, or raise "
                    "dataset.test_fraction (the share of each class held out of train/).")
  val_paths, val_labels = found.get("val", ([], None))
  every = list(paths) + list(test_paths) + list(val_paths)
  image_source.check_files(every, FOLDER_HOW)
  shape = folder_image_shape(every, options.get("image_size"))

  def files(paths, labels) -> Split:
    return Split(image_source.FileImages(paths, shape, root=root, how=FOLDER_HOW),
                 np.asarray(labels, np.int64))
  return Splits(files(paths, labels), files(test_paths, test_labels), num_classes=len(classes),
                val=files(val_paths, val_labels) if val_paths else None)


def check_folder_files(root: str, log: Callable[[str], None] | None = None) -> str:
  """Reads every image file's header (see `image_source.check_files`) and says what the
  folder holds, for run.py --check."""
  from lt_jax.data import image_source

  classes, found = folder_files(root)
  paths = [p for files, _ in found.values() for p in files]
  image_source.check_files(paths, FOLDER_HOW, log)
  return (f"{len(paths):,} images in {len(classes)} classes readable ("
          + ", ".join(f"{split} {len(files):,}" for split, (files, _) in found.items()) + ")")


def folder_channels(root: str) -> int:
  """Channels of an image folder's images, from the file headers."""
  _, found = folder_files(root)
  return 1 if _headers([p for paths, _ in found.values() for p in paths])[1] else 3
