"""ImageNet-LT / iNaturalist split lists over a tree of real JPEGs written here."""

import os

import numpy as np
import pytest
from PIL import Image

from lt_jax.data import datasets, image_lists
from lt_jax.data.sources import digits_arrays
from lt_jax.errors import DataError


@pytest.fixture
def tree(tmp_path):
  """Six digits as 40x40 RGB JPEGs in class folders, and an ImageNet-LT-style train list."""
  images_0_16, targets = digits_arrays()  # scikit-learn's digits, 0..16
  root = tmp_path / "images"
  rows = []
  for i in range(6):
    label = int(targets[i])
    folder = root / "train" / f"n{label:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (images_0_16[i] * 255 / 16).astype(np.uint8)
    Image.fromarray(pixels).resize((40, 40)).convert("RGB").save(folder / f"{i}.JPEG")
    rows.append(f"train/n{label:08d}/{i}.JPEG {label}")
  lists = tmp_path / "lists"
  lists.mkdir()
  (lists / "ImageNet_LT_train.txt").write_text("\n".join(rows) + "\n")
  return root, lists, [int(t) for t in targets[:6]]


def test_reads_a_list_and_decodes_its_images(tree):
  root, lists, labels = tree
  path = image_lists.list_path(str(lists), datasets.get("imagenet_lt"), "train")
  images = image_lists.read_list(path, str(root), num_classes=1000)
  assert len(images) == 6 and list(images.labels) == labels
  assert list(images.lines) == [1, 2, 3, 4, 5, 6]
  image = image_lists.read_image(images, 2)
  assert image.mode == "RGB" and image.size == (40, 40)
  assert images.class_counts(10).sum() == 6


def _write(lists, text):
  (lists / "ImageNet_LT_train.txt").write_text(text)
  return str(lists / "ImageNet_LT_train.txt")


@pytest.mark.parametrize("text, message", [
    ("train/n00000000/0.JPEG\n", ":1: expected 'relative/path label'"),
    ("train/n00000000/0.JPEG 0\ntrain/n00000001/1.JPEG one\n", ":2: the label 'one' is not"),
    ("train/n00000000/0.JPEG 1000\n", r":1: label 1000 is outside \[0, 1000\)"),
    ("train/n00000000/0.JPEG -1\n", ":1: label -1 is outside"),
    ("\n\n", "lists no images"),
    ("train/n00000000/0.JPEG 0\ntrain/n00000000/missing.JPEG 0\n",
     "1 of the 2 images listed in .* are missing .*line 2: .*missing.JPEG"),
])
def test_a_broken_list_names_its_line(tree, text, message):
  root, lists, _ = tree
  with pytest.raises(DataError, match=message):
    image_lists.read_list(_write(lists, text), str(root), num_classes=1000)


def test_missing_lists_and_folders_are_named(tree, tmp_path):
  root, lists, _ = tree
  with pytest.raises(DataError, match=r"ImageNet_LT_val.txt is missing: put ImageNet_LT_"
                                      r"train.txt, ImageNet_LT_val.txt, ImageNet_LT_test.txt in "
                                      r"that folder"):
    image_lists.list_path(str(lists), datasets.get("imagenet_lt"), "val")
  with pytest.raises(DataError, match="inat18 has no 'test' split; its lists are "
                                      "iNaturalist18_train.txt, iNaturalist18_val.txt"):
    image_lists.list_path(str(lists), datasets.get("inat18"), "test")
  with pytest.raises(DataError, match="unknown dataset name 'places_lt'"):
    image_lists.list_path(str(lists), datasets.get("places_lt"), "train")
  with pytest.raises(DataError, match="'cifar10' has no split lists; it is read as arrays"):
    image_lists.list_path(str(lists), datasets.get("cifar10"), "train")
  path = image_lists.list_path(str(lists), datasets.get("imagenet_lt"), "train")
  with pytest.raises(DataError, match="image folder .*nowhere does not exist"):
    image_lists.read_list(path, str(tmp_path / "nowhere"), num_classes=1000)


def test_an_undecodable_image_names_its_list_line(tree):
  root, lists, labels = tree
  path = image_lists.list_path(str(lists), datasets.get("imagenet_lt"), "train")
  images = image_lists.read_list(path, str(root), num_classes=1000)
  with open(images.paths[3], "wb") as f:
    f.write(b"not a jpeg")
  with pytest.raises(DataError, match=r"ImageNet_LT_train.txt:4: image .*3.JPEG cannot be "
                                      "decoded"):
    image_lists.read_image(images, 3)
  os.remove(images.paths[4])
  with pytest.raises(DataError, match=r"ImageNet_LT_train.txt:5: image .*4.JPEG is missing"):
    image_lists.read_image(images, 4)
