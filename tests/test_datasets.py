"""The dataset registry: its entries hold together, and a new dataset is one entry plus a config."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from conftest import tiny_config

from lt_jax import pipeline
from lt_jax.config import override
from lt_jax.data import datasets, prepare, sources
from lt_jax.errors import ConfigError, DataError
from lt_jax.validate import validate


@pytest.mark.parametrize("spec", datasets.DATASETS.values(), ids=lambda s: s.name)
def test_every_entry_holds_together(spec):
  assert spec.placement in datasets.PLACEMENTS
  assert "train" in spec.splits
  if spec.num_classes is not None and spec.class_order is not None:
    assert sorted(spec.class_order) == list(range(spec.num_classes))
  if spec.mean is not None:
    assert len(spec.mean) == len(spec.std) == spec.channels
    assert all(0 < s for s in spec.std) and all(0 <= m <= 1 for m in spec.mean)
  assert set(spec.optional_splits) <= set(spec.splits) - {"train"}
  if spec.host_fed:  # Streamed through its split lists ("" prefix: train.txt ...).
    assert spec.list_prefix is not None and spec.find is None and spec.read is None
    assert spec.channels == 3  # Decoded to RGB; classes None: 1 + the largest label listed.
  else:  # Read into arrays.
    assert callable(spec.find) and callable(spec.read) and spec.list_prefix is None
    assert spec.layout is None or spec.default_dir is not None
    assert spec.channels is not None or callable(spec.channels_from)


def test_source_options_are_what_the_entry_accepts():
  config = tiny_config()
  for name, with_extra, expected in (("npz", False, {"path": "/a.npz"}),
                                     ("svhn", True, {"extra": True}),
                                     ("svhn", False, {"extra": False}),
                                     ("cifar10", True, {}), ("digits", False, {}),
                                     ("image_folder", False,
                                      {"image_size": 224, "test_fraction": 0.2})):
    ds = override(config, **{"dataset.name": name, "dataset.npz_path": "/a.npz"}).dataset
    assert prepare.source_options(ds, with_extra) == expected


def test_host_fed_entries_are_not_loaded_as_arrays():
  with pytest.raises(DataError, match="'imagenet_lt' is streamed from the host through its split "
                                      r"lists \(ImageNet_LT_<split>.txt\)"):
    datasets.load("imagenet_lt")


def _write_idx(path, array):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def digits_as_idx(tmp_path, monkeypatch):
  """scikit-learn's digits written as MNIST-style IDX files and registered as a new dataset
  `digits_idx`, with its own class order (9 largest) and default largest class: one entry,
  an existing reader, no other change."""
  digits = datasets.load("digits")
  folder = tmp_path / "digits_idx"
  folder.mkdir()
  for prefix, split in (("train", digits.train), ("t10k", digits.test)):
    _write_idx(folder / f"{prefix}-images-idx3-ubyte", split.images[..., 0])
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte", split.labels)
  layout = sources.Layout(what="the digits as IDX files", subfolder="digits_idx",
                          files=("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                          how="write them with the test's fixture")
  spec = datasets.DatasetSpec(
      "digits_idx", "device", 10, 1, None, None, class_order=tuple(range(9, -1, -1)),
      img_max=50, find=sources.find_layout, read=sources.read_idx, layout=layout,
      default_dir=str(tmp_path))
  monkeypatch.setitem(datasets.DATASETS, "digits_idx", spec)
  return digits


def test_a_new_dataset_is_one_entry_plus_a_config(digits_as_idx, tmp_path):
  digits = digits_as_idx
  loaded = datasets.load("digits_idx")  # From the entry's default folder.
  np.testing.assert_array_equal(loaded.train.images, digits.train.images)
  np.testing.assert_array_equal(loaded.test.labels, digits.test.labels)
  # No statistics in the entry: the training images' own, in [0, 1] units.
  np.testing.assert_allclose(loaded.mean, [digits.train.images.mean() / 255], rtol=1e-6)
  np.testing.assert_allclose(loaded.std, [(digits.train.images / 255).std()], rtol=1e-6)

  config = tiny_config(dataset__name="digits_idx", dataset__img_max=None,
                       train__num_epochs=1)
  validate(config)  # The name is known, the files found.
  subset = prepare.prepare(config.dataset)
  # The reference's rule int(img_max * (1 / rho) ** (i / (C - 1))), the largest count going
  # to class 9 as the entry orders them, and img_max the entry's 50.
  expected = [int(50 * 0.1 ** (i / 9)) for i in range(10)][::-1]
  assert subset.class_counts == expected == np.bincount(subset.train.labels).tolist()

  pipeline.run(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "results.json") as f:
    written = json.load(f)
  assert written["class_counts"] == expected
  assert written["dataset"] == {"name": "digits_idx", "num_classes": 10, "train_size": 199,
                                "val_size": 0, "test_size": len(digits.test.labels)}


def test_unknown_names_list_the_registry(digits_as_idx):
  with pytest.raises(ConfigError, match="digits_idx"):
    validate(tiny_config(dataset__name="places_lt"))
  with pytest.raises(DataError, match="unknown dataset name 'places_lt'; valid choices: cifar10"):
    datasets.get("places_lt")
