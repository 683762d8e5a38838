"""Round-trips through small files written in the real published formats, and every error path."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy import io as sio

from lt_jax.data import datasets, sources
from lt_jax.errors import DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# --- writers for the real formats ---------------------------------------------------------


def _cifar_rows(n: int, seed: int) -> np.ndarray:
  """Random CIFAR rows (R, G, B planes of 32x32, row-major)."""
  return np.random.RandomState(seed).randint(0, 256, size=(n, 3072)).astype(np.uint8)


def _write_cifar_pickle(path: Path, data: np.ndarray, labels: list[int], label_key: bytes) -> None:
  # The archives were pickled by Python 2: str keys read back as bytes under encoding='bytes'.
  batch = {b"batch_label": b"batch", label_key: labels, b"data": data,
           b"filenames": [b"img_%d.png" % i for i in range(len(data))]}
  with open(path, "wb") as f:
    pickle.dump(batch, f, protocol=2)


def _write_cifar10(folder: Path, per_batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """data_batch_1..5 and test_batch; returns all train rows and labels in file order."""
  folder.mkdir(parents=True)
  rows, labels = [], []
  for i in range(1, 6):
    data = _cifar_rows(per_batch, seed=i)
    batch_labels = [(i + j) % 10 for j in range(per_batch)]
    _write_cifar_pickle(folder / f"data_batch_{i}", data, batch_labels, b"labels")
    rows.append(data)
    labels += batch_labels
  _write_cifar_pickle(folder / "test_batch", _cifar_rows(2, seed=9), [9, 0], b"labels")
  return np.concatenate(rows), np.array(labels)


def _idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
  header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
  raw = _idx_bytes(array)
  if gz:
    path = path.with_name(path.name + ".gz")
    raw = gzip.compress(raw)
  path.write_bytes(raw)


def _write_fashion(folder: Path, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
  """Train files gzipped, test files plain (both occur in the wild)."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.RandomState(0)
  arrays = {
      "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)),
      "train-labels-idx1-ubyte": np.arange(n_train) % 10,
      "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)),
      "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
  }
  for name, array in arrays.items():
    _write_idx(folder / name, array, gz=name.startswith("train"))
  return arrays


def _write_svhn_mat(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """'X' (32, 32, 3, N) uint8 and 'y' (N, 1) with 10 meaning digit 0, as the real files."""
  x = np.random.RandomState(seed).randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
  y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10
  sio.savemat(str(path), {"X": x, "y": y})
  return x, y


def _write_npz(path: Path, **overrides: np.ndarray) -> dict[str, np.ndarray]:
  rng = np.random.RandomState(1)
  arrays = {
      "x_train": rng.randint(0, 256, (6, 5, 4, 3)).astype(np.uint8),
      "y_train": np.array([0, 1, 2, 0, 1, 2]),
      "x_test": rng.randint(0, 256, (3, 5, 4, 3)).astype(np.uint8),
      "y_test": np.array([2, 1, 0]),
  }
  arrays.update(overrides)
  np.savez(path, **arrays)
  return arrays


def _assert_uint8_nhwc(split: sources.Split, shape: tuple[int, ...]) -> None:
  assert split.images.shape == shape
  assert split.images.dtype == np.uint8 and split.images.flags.c_contiguous
  assert split.labels.shape == (shape[0],) and split.labels.dtype == np.int64


# --- CIFAR --------------------------------------------------------------------------------


def test_cifar10_round_trip_from_parent_and_folder(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  rows, labels = _write_cifar10(folder)
  for data_dir in (tmp_path, folder):
    ds = datasets.load("cifar10", str(data_dir))
    _assert_uint8_nhwc(ds.train, (15, 32, 32, 3))
    _assert_uint8_nhwc(ds.test, (2, 32, 32, 3))
    np.testing.assert_array_equal(ds.train.labels, labels)
    np.testing.assert_array_equal(ds.test.labels, [9, 0])
    # Pixel (y, x) of channel c sits at row[c * 1024 + y * 32 + x].
    assert ds.train.images[4, 5, 7, 0] == rows[4, 0 * 1024 + 5 * 32 + 7]
    assert ds.train.images[4, 31, 0, 2] == rows[4, 2 * 1024 + 31 * 32 + 0]
    assert (ds.num_classes, ds.mean, ds.std, ds.extra) == (
        10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), None)


def test_cifar_planes_land_as_channels(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  row = np.concatenate([np.full(1024, v, np.uint8) for v in (1, 2, 3)])[None]
  _write_cifar_pickle(folder / "test_batch", row, [4], b"labels")
  image = datasets.load("cifar10", str(tmp_path)).test.images[0]
  assert image.shape == (32, 32, 3)
  assert (image == np.array([1, 2, 3], np.uint8)).all()


def test_cifar_label_out_of_range_names_its_own_file(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  _write_cifar_pickle(folder / "data_batch_2", _cifar_rows(3, seed=2), [1, 10, 3], b"labels")
  with pytest.raises(DataError, match=r"data_batch_2.*labels span 1\.\.10") as err:
    datasets.load("cifar10", str(tmp_path))
  assert "data_batch_1" not in str(err.value)


def test_cifar100_uses_fine_labels(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  train = _cifar_rows(4, seed=0)
  for name, data, fine in (("train", train, [99, 0, 50, 7]), ("test", _cifar_rows(1, 1), [3])):
    batch = {b"data": data, b"fine_labels": fine, b"coarse_labels": [1] * len(fine)}
    with open(folder / name, "wb") as f:
      pickle.dump(batch, f, protocol=2)
  ds = datasets.load("cifar100", str(tmp_path))
  _assert_uint8_nhwc(ds.train, (4, 32, 32, 3))
  np.testing.assert_array_equal(ds.train.labels, [99, 0, 50, 7])
  assert ds.num_classes == 100 and ds.mean == (0.4914, 0.4822, 0.4465)
  assert ds.train.images[2, 10, 20, 1] == train[2, 1024 + 10 * 32 + 20]


def test_cifar_missing_folder_names_it_and_how_to_get_it(tmp_path):
  with pytest.raises(DataError, match="cifar-10-batches-py") as err:
    datasets.load("cifar10", str(tmp_path))
  assert "data_batch_1" in str(err.value) and "download" in str(err.value)
  assert str(tmp_path) in str(err.value)
  with pytest.raises(DataError, match="cifar-100-python.*download"):
    datasets.check_available("cifar100", str(tmp_path))


def test_cifar_missing_single_file(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  (folder / "data_batch_3").unlink()
  with pytest.raises(DataError, match="'data_batch_3'.*download"):
    datasets.check_available("cifar10", str(tmp_path))


def test_cifar_corrupt_pickle(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  (folder / "test_batch").write_bytes(b"not a pickle at all")
  with pytest.raises(DataError, match="test_batch.*not a readable CIFAR"):
    datasets.load("cifar10", str(tmp_path))


def test_cifar_default_dir_expands_home(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  _write_cifar10(tmp_path / ".lt_jax" / "data" / "cifar-10-batches-py")
  datasets.check_available("cifar10")
  assert datasets.load("cifar10").train.images.shape == (15, 32, 32, 3)


# --- SVHN ---------------------------------------------------------------------------------


def test_svhn_round_trip_maps_10_to_0(tmp_path):
  x, _ = _write_svhn_mat(tmp_path / "train_32x32.mat", 12, seed=0)
  _write_svhn_mat(tmp_path / "test_32x32.mat", 3, seed=1)
  ds = datasets.load("svhn", str(tmp_path))
  _assert_uint8_nhwc(ds.train, (12, 32, 32, 3))
  np.testing.assert_array_equal(ds.train.labels, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2])
  assert ds.train.images[5, 3, 17, 2] == x[3, 17, 2, 5]
  np.testing.assert_array_equal(ds.train.images[11], x[..., 11])
  assert ds.extra is None and ds.num_classes == 10


def test_svhn_extra_when_present(tmp_path):
  _write_svhn_mat(tmp_path / "train_32x32.mat", 2, seed=0)
  _write_svhn_mat(tmp_path / "test_32x32.mat", 2, seed=1)
  x, _ = _write_svhn_mat(tmp_path / "extra_32x32.mat", 10, seed=2)
  ds = datasets.load("svhn", str(tmp_path))
  _assert_uint8_nhwc(ds.extra, (10, 32, 32, 3))
  assert ds.extra.labels[9] == 0
  np.testing.assert_array_equal(ds.extra.images[7], x[..., 7])
  assert datasets.load("svhn", str(tmp_path), extra=False).extra is None


def test_svhn_missing_file(tmp_path):
  _write_svhn_mat(tmp_path / "train_32x32.mat", 2, seed=0)
  with pytest.raises(DataError, match="'test_32x32.mat'.*download"):
    datasets.load("svhn", str(tmp_path))
  with pytest.raises(DataError, match="train_32x32.mat.*ufldl"):
    datasets.check_available("svhn", str(tmp_path / "elsewhere"))


# --- Fashion-MNIST (IDX) ------------------------------------------------------------------


def test_fashion_idx_round_trip_gzip_and_plain(tmp_path):
  arrays = _write_fashion(tmp_path)
  ds = datasets.load("fashion_mnist", str(tmp_path))
  _assert_uint8_nhwc(ds.train, (6, 28, 28, 1))
  _assert_uint8_nhwc(ds.test, (4, 28, 28, 1))
  np.testing.assert_array_equal(ds.train.images[..., 0], arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(ds.test.images[..., 0], arrays["t10k-images-idx3-ubyte"])
  np.testing.assert_array_equal(ds.test.labels, [3, 4, 5, 6])
  assert ds.train.images[2, 27, 1, 0] == arrays["train-images-idx3-ubyte"][2, 27, 1]
  assert ds.train.images.flags.writeable
  assert ds.mean == (0.2860,) and ds.std == (0.3530,)


def test_fashion_missing_folder(tmp_path):
  with pytest.raises(DataError, match="train-images-idx3-ubyte") as err:
    datasets.check_available("fashion_mnist", str(tmp_path))
  assert "apt-get install -y dataset-fashion-mnist" in str(err.value)


def test_fashion_missing_single_file(tmp_path):
  _write_fashion(tmp_path)
  (tmp_path / "t10k-labels-idx1-ubyte").unlink()
  with pytest.raises(DataError, match="'t10k-labels-idx1-ubyte'.*apt-get"):
    datasets.load("fashion_mnist", str(tmp_path))


def test_idx_bad_magic(tmp_path):
  _write_fashion(tmp_path)
  path = tmp_path / "t10k-images-idx3-ubyte"
  path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*magic"):
    datasets.load("fashion_mnist", str(tmp_path))


def test_idx_wrong_dtype_code(tmp_path):
  _write_fashion(tmp_path)
  path = tmp_path / "t10k-labels-idx1-ubyte"
  path.write_bytes(_idx_bytes(np.zeros(4), dtype_code=0x0D))
  with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*0x0d"):
    datasets.load("fashion_mnist", str(tmp_path))


def test_idx_truncated_plain_and_gzip(tmp_path):
  _write_fashion(tmp_path)
  plain = tmp_path / "t10k-images-idx3-ubyte"
  plain.write_bytes(plain.read_bytes()[:-5])
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
    datasets.load("fashion_mnist", str(tmp_path))
  _write_fashion(tmp_path)
  gz = tmp_path / "train-images-idx3-ubyte.gz"
  gz.write_bytes(gz.read_bytes()[:40])
  with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*(gzip|truncated)"):
    datasets.load("fashion_mnist", str(tmp_path))


def test_idx_image_label_count_mismatch(tmp_path):
  _write_fashion(tmp_path)
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(3), gz=False)
  with pytest.raises(DataError, match="4 images.*3 labels"):
    datasets.load("fashion_mnist", str(tmp_path))


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install -y dataset-fashion-mnist")
def test_real_fashion_mnist():
  datasets.check_available("fashion_mnist")
  ds = datasets.load("fashion_mnist")
  _assert_uint8_nhwc(ds.train, (60000, 28, 28, 1))
  _assert_uint8_nhwc(ds.test, (10000, 28, 28, 1))
  np.testing.assert_array_equal(np.bincount(ds.train.labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test.labels), [1000] * 10)
  pixels = ds.train.images / 255.0
  np.testing.assert_allclose((pixels.mean(),), ds.mean, atol=5e-5)
  np.testing.assert_allclose((pixels.std(),), ds.std, atol=5e-5)


# --- scikit-learn digits ------------------------------------------------------------------


def test_digits_read_without_sklearn_equal_load_digits():
  from sklearn.datasets import load_digits

  pixels, labels = sources.digits_arrays()
  bunch = load_digits()
  np.testing.assert_array_equal(pixels, bunch.images)
  np.testing.assert_array_equal(labels, bunch.target)
  assert pixels.shape == (1797, 8, 8) and labels.dtype == np.int64


def test_digits_stratified_deterministic_split():
  from sklearn.datasets import load_digits

  per_class = np.bincount(load_digits().target)
  ds = datasets.load("digits")
  assert len(ds.train.labels) + len(ds.test.labels) == 1797
  _assert_uint8_nhwc(ds.train, (1258, 8, 8, 1))
  _assert_uint8_nhwc(ds.test, (539, 8, 8, 1))
  expected_test = [int(round(0.3 * n)) for n in per_class]
  np.testing.assert_array_equal(np.bincount(ds.test.labels), expected_test)
  np.testing.assert_array_equal(np.bincount(ds.train.labels), per_class - expected_test)
  again = datasets.load("digits")
  np.testing.assert_array_equal(again.train.images, ds.train.images)
  np.testing.assert_array_equal(again.test.labels, ds.test.labels)


def test_digits_values_and_stats():
  ds = datasets.load("digits")
  allowed = np.round(np.arange(17) * 255 / 16).astype(np.uint8)
  assert set(np.unique(ds.train.images)) <= set(allowed)
  assert ds.train.images.min() == 0 and ds.train.images.max() == 255
  pixels = ds.train.images / 255.0
  np.testing.assert_allclose(ds.mean, (pixels.mean(),), rtol=1e-9)
  np.testing.assert_allclose(ds.std, (pixels.std(),), rtol=1e-9)
  assert ds.num_classes == 10
  datasets.check_available("digits")


# --- npz ----------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
  path = tmp_path / "mine.npz"
  arrays = _write_npz(path)
  ds = datasets.load("npz", str(path))  # data_dir may name the file itself.
  _assert_uint8_nhwc(ds.train, (6, 5, 4, 3))
  np.testing.assert_array_equal(ds.train.images, arrays["x_train"])
  np.testing.assert_array_equal(ds.test.labels, [2, 1, 0])
  assert ds.num_classes == 3
  pixels = arrays["x_train"].reshape(-1, 3) / 255.0
  np.testing.assert_allclose(ds.mean, pixels.mean(0), rtol=1e-9)
  np.testing.assert_allclose(ds.std, pixels.std(0), rtol=1e-9)
  assert datasets.load("npz", path=str(path), num_classes=7).num_classes == 7
  datasets.check_available("npz", path=str(path))


def test_npz_grey_images_get_a_channel(tmp_path):
  path = tmp_path / "grey.npz"
  x = np.arange(6 * 5 * 4, dtype=np.uint8).reshape(6, 5, 4)
  _write_npz(path, x_train=x, x_test=x[:3])
  ds = datasets.load("npz", path=str(path))
  _assert_uint8_nhwc(ds.train, (6, 5, 4, 1))
  np.testing.assert_array_equal(ds.train.images[..., 0], x)
  assert len(ds.mean) == 1


def test_npz_float_images(tmp_path):
  path = tmp_path / "float.npz"
  _write_npz(path, x_train=np.zeros((6, 5, 4, 3), np.float32))
  with pytest.raises(DataError, match="'x_train' is float32.*convert it to uint8 0..255"):
    datasets.load("npz", path=str(path))


@pytest.mark.parametrize("y_test, num_classes", [(np.array([0, 1, -1]), None),
                                                 (np.array([0, 1, 5]), 4)])
def test_npz_out_of_range_labels(tmp_path, y_test, num_classes):
  path = tmp_path / "labels.npz"
  _write_npz(path, y_test=y_test)
  options = {} if num_classes is None else {"num_classes": num_classes}
  with pytest.raises(DataError, match="'y_test'.*labels span"):
    datasets.load("npz", path=str(path), **options)


def test_npz_channel_first_images_are_refused_with_the_transpose(tmp_path):
  path = tmp_path / "nchw.npz"
  rng = np.random.RandomState(0)
  nchw = rng.randint(0, 256, (6, 3, 8, 8)).astype(np.uint8)
  _write_npz(path, x_train=nchw, x_test=nchw[:3])
  with pytest.raises(DataError, match=r"'x_train' has shape \(6, 3, 8, 8\), which is "
                     r"channel-first .*x.transpose\(0, 2, 3, 1\), shape \(6, 8, 8, 3\)"):
    datasets.load("npz", path=str(path))
  # The same images stored as the fix says load, pixel for pixel.
  _write_npz(path, x_train=nchw.transpose(0, 2, 3, 1), x_test=nchw[:3].transpose(0, 2, 3, 1))
  ds = datasets.load("npz", path=str(path))
  np.testing.assert_array_equal(ds.train.images[:, 2, 5, :], nchw[:, :, 2, 5])
  # More channels than pixels per side cannot be (N, H, W, C); 2 channels or 5 bands can.
  _write_npz(path, x_train=np.zeros((6, 2, 2, 16), np.uint8), x_test=np.zeros((3, 2, 2, 16),
                                                                                np.uint8))
  with pytest.raises(DataError, match=r"its 16 channels outnumber its 2 x 2 pixels"):
    datasets.load("npz", path=str(path))
  for channels in (2, 5):
    x = np.zeros((6, 8, 8, channels), np.uint8)
    _write_npz(path, x_train=x, x_test=x[:3])
    assert datasets.load("npz", path=str(path)).train.images.shape == (6, 8, 8, channels)


def test_npz_bad_shapes_and_keys(tmp_path):
  path = tmp_path / "bad.npz"
  _write_npz(path, y_train=np.array([0, 1]))
  with pytest.raises(DataError, match="'y_train' has shape"):
    datasets.load("npz", path=str(path))
  np.savez(path, x_train=np.zeros((1, 2, 2), np.uint8))
  with pytest.raises(DataError, match="lacks the array.*y_train"):
    datasets.check_available("npz", str(path))
  with pytest.raises(DataError, match="expected an .npz file.*np.savez"):
    datasets.load("npz", path=str(tmp_path / "nowhere.npz"))
  with pytest.raises(DataError, match="npz_path"):
    datasets.load("npz")


# --- names, kinds and options -------------------------------------------------------------


def test_unknown_name_source_and_option():
  with pytest.raises(DataError, match="'imagenet'.*cifar10, cifar100, svhn"):
    datasets.load("imagenet")
  with pytest.raises(DataError, match="'hdf5'.*files, tfds"):
    datasets.check_available("cifar10", source="hdf5")
  with pytest.raises(DataError, match="no tfds source"):
    datasets.load("digits", source="tfds")
  with pytest.raises(DataError, match="unknown option.*extra"):
    datasets.load("svhn", extras=False)


# --- TFDS ---------------------------------------------------------------------------------
# tfds.testing.mock_data drives tfds.data_source without TensorFlow, but only when a split is
# named (split=None asks the missing metadata for its splits and gets none) and only through
# __getitem__ (its __getitems__ mock is broken); sources reads split by split, item by item.


@pytest.mark.parametrize("name, shape", [("cifar10", (32, 32, 3)), ("cifar100", (32, 32, 3)),
                                         ("fashion_mnist", (28, 28, 1))])
def test_tfds_with_mock_data(tmp_path, name, shape):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5):
    ds = datasets.load(name, str(tmp_path), source="tfds")
    direct = tfds.data_source(datasets.get(name).tfds_name, split="test", data_dir=str(tmp_path))
    records = [direct[i] for i in range(5)]
  if name.startswith("cifar"):  # Back in the archive's order, which the ids give.
    records.sort(key=lambda r: r["id"])
  expected = np.stack([r["image"] for r in records])
  _assert_uint8_nhwc(ds.train, (5,) + shape)
  _assert_uint8_nhwc(ds.test, (5,) + shape)
  np.testing.assert_array_equal(ds.test.images, expected)
  assert ds.train.labels.min() >= 0 and ds.train.labels.max() < ds.num_classes
  assert ds.extra is None


def test_tfds_svhn_cropped_extra_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=3):
    ds = datasets.load("svhn", str(tmp_path), source="tfds")
    without = datasets.load("svhn", str(tmp_path), source="tfds", extra=False)
  _assert_uint8_nhwc(ds.extra, (3, 32, 32, 3))
  assert without.extra is None


def test_tfds_cifar_records_return_to_the_archive_order(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  shuffled = [3, 0, 2, 1]  # The order TFDS stored them in.
  records = [{"id": f"train_{i:05d}".encode(), "label": np.int64(i),
              "image": np.full((32, 32, 3), i, np.uint8)} for i in shuffled]
  monkeypatch.setattr(tfds, "data_source", lambda *a, **k: records)
  ds = datasets.load("cifar10", "/nowhere", source="tfds")
  np.testing.assert_array_equal(ds.train.labels, [0, 1, 2, 3])
  np.testing.assert_array_equal(ds.train.images[:, 0, 0, 0], [0, 1, 2, 3])


def test_tfds_exact_values_with_fake_data_source(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  image = np.zeros((32, 32, 3), np.uint8)
  image[4, 9] = (7, 8, 9)
  calls = []

  def fake_data_source(name, *, split, data_dir, download):
    calls.append((name, split, data_dir, download))
    return [{"image": image, "label": np.int64(3)}, {"image": image * 2, "label": np.int64(0)}]

  monkeypatch.setattr(tfds, "data_source", fake_data_source)
  ds = datasets.load("svhn", "~/tfds_here", source="tfds")
  np.testing.assert_array_equal(ds.train.images[1, 4, 9], [14, 16, 18])
  np.testing.assert_array_equal(ds.test.labels, [3, 0])
  expanded = os.path.expanduser("~/tfds_here")
  assert calls == [("svhn_cropped", s, expanded, False) for s in ("train", "test", "extra")]


def test_tfds_missing_dataset(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DataError, match="'cifar10'.*tfds build cifar10 --file_format=array_record"):
    datasets.load("cifar10", str(tmp_path), source="tfds")
  with pytest.raises(DataError, match="'svhn_cropped'.*tfds build"):
    datasets.check_available("svhn", str(tmp_path), source="tfds")
