"""Open unlabeled pools read from their real formats: CINIC-10's PNG tree, any image folder,
TFDS stl10 (mock data); lazy reading, the configs that use them, and the draw on predictions
end to end."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from lt_jax import pipeline, predict, pseudo_label, recipe, semi
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import datasets, image_source, open_pools, unlabeled
from lt_jax.data.sources import Dataset, Split
from lt_jax.errors import ConfigError, DataError
from lt_jax.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CIFAR_SHAPE = (32, 32, 3)


def cifar_like(shape=CIFAR_SHAPE, name="cifar10"):
  split = Split(np.zeros((10,) + shape, np.uint8), np.arange(10))
  return Dataset(name, split, split, 10, (0.5,) * shape[-1], (0.5,) * shape[-1])


def random_image(gen, shape=CIFAR_SHAPE):
  return gen.integers(0, 256, shape, dtype=np.uint8)


def save(path, array, mode=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode).save(path)


def box_mean(image, k):
  """The k x k block mean, rounded half up (written independently of image_source's)."""
  total = sum(image[i::k, j::k].astype(np.int64) for i in range(k) for j in range(k))
  return np.floor(total / (k * k) + 0.5).astype(np.uint8)


# --- CINIC-10 ---------------------------------------------------------------------------


def cinic_tree(root, per_class=2):
  """CINIC-10's layout: per split and class, `per_class` ImageNet-derived PNGs (one of them
  greyscale, as some CINIC-10 images are) and one CIFAR-derived PNG that must never be read.
  Returns {split: (images as RGB, labels)} in split, class, file-name order."""
  gen = np.random.default_rng(0)
  expected = {}
  for split in open_pools.CINIC10_SPLITS:
    images, labels = [], []
    for label, name in enumerate(open_pools.CIFAR10_CLASSES):
      folder = os.path.join(root, split, name)
      for k in range(per_class):
        file_name = f"n{2000000 + 17 * label + k:08d}_{k * 31}.png"
        if k == 0 and label == 3:
          grey = random_image(gen, (32, 32))
          save(os.path.join(folder, file_name), grey, "L")
          images.append(np.repeat(grey[..., None], 3, axis=-1))
        else:
          image = random_image(gen)
          save(os.path.join(folder, file_name), image)
          images.append(image)
        labels.append(label)
      save(os.path.join(folder, f"cifar10-{split}-{label}.png"), random_image(gen))
    expected[split] = (np.stack(images), np.asarray(labels))
  return expected


def test_cinic10_reads_imagenet_derived_images_with_folder_labels(tmp_path):
  expected = cinic_tree(tmp_path)
  cand = unlabeled.candidate_pool("cinic10", cifar_like(), cinic10_dir=str(tmp_path))
  assert isinstance(cand.images, image_source.ImageSource) and len(cand.images) == 60
  want_images = np.concatenate([expected[s][0] for s in open_pools.CINIC10_SPLITS])
  want_labels = np.concatenate([expected[s][1] for s in open_pools.CINIC10_SPLITS])
  np.testing.assert_array_equal(image_source.to_array(cand.images), want_images)
  np.testing.assert_array_equal(cand.labels, want_labels)
  np.testing.assert_array_equal(cand.source_indices, np.arange(60))
  valid, labels = open_pools.cinic10(str(tmp_path), CIFAR_SHAPE, splits=("valid",))
  np.testing.assert_array_equal(image_source.to_array(valid), expected["valid"][0])
  np.testing.assert_array_equal(labels, expected["valid"][1])
  # The archive extracted into a CINIC-10/ folder is found too.
  os.rename(tmp_path, str(tmp_path) + "_x")
  os.makedirs(tmp_path)
  os.rename(str(tmp_path) + "_x", tmp_path / "CINIC-10")
  assert len(open_pools.cinic10(str(tmp_path), CIFAR_SHAPE)[0]) == 60


def test_cinic10_pool_drawn_on_class_folders_is_read_lazily(tmp_path):
  cinic_tree(tmp_path, per_class=3)
  cand = unlabeled.candidate_pool("cinic10", cifar_like(), cinic10_dir=str(tmp_path))
  assert unlabeled.draw_rule("auto", "cinic10", cand.labels) == "labels"
  pool = unlabeled.select_pool(cand.images, cand.labels, [5] * 10, range(10),
                               np.random.RandomState(0), source="cinic10",
                               source_indices=cand.source_indices)
  assert isinstance(pool.images, image_source.ImageSource)  # Nothing decoded yet.
  assert np.bincount(pool.true_labels).tolist() == [5] * 10
  np.testing.assert_array_equal(image_source.to_array(pool.images),
                                cand.images.read(pool.source_indices))
  # 9 images per class cannot hold 10 of each: refused before any training, every class named.
  short = r"\(classes by folder\) holds: class 0: 10 asked for, 9 exist;.*class 9"
  with pytest.raises(ConfigError, match=r"than CINIC-10's ImageNet-derived images " + short):
    unlabeled.select_pool(cand.images, cand.labels, [10] * 10, range(10),
                          np.random.RandomState(0), source="cinic10")


def test_cinic10_errors_name_the_path_and_the_download(tmp_path):
  with pytest.raises(DataError, match=r"train/, valid/ and test/.*690 MB.*10.7488/ds/2448"):
    open_pools.cinic10(str(tmp_path), CIFAR_SHAPE)
  cinic_tree(tmp_path, per_class=1)
  frog = tmp_path / "valid" / "frog"
  for f in os.listdir(frog):
    if f.startswith("n"):
      os.remove(frog / f)
  with pytest.raises(DataError, match=r"valid/frog holds no ImageNet-derived PNGs"):
    open_pools.cinic10(str(tmp_path), CIFAR_SHAPE)
  os.rename(frog, tmp_path / "valid" / "frogs")
  with pytest.raises(DataError, match=r"class folder .*valid/frog;"):
    open_pools.cinic10(str(tmp_path), CIFAR_SHAPE)
  images, _ = open_pools.cinic10(str(tmp_path), CIFAR_SHAPE, splits=("train",))
  (tmp_path / "train" / "cat" / "n9_broken.png").write_bytes(b"not a png")
  # Found when the pool is listed, before any model trains.
  with pytest.raises(DataError, match=r"1 of the .* image files cannot be used: .*n9_broken.png "
                                      r"\(UnidentifiedImageError.*CINIC-10"):
    open_pools.cinic10(str(tmp_path), CIFAR_SHAPE, splits=("train",))


# --- image folders ----------------------------------------------------------------------


def test_image_folder_fits_sizes_and_channels(tmp_path):
  gen = np.random.default_rng(1)
  rgb, grey, rgba = random_image(gen), random_image(gen, (32, 32)), random_image(gen, (32, 32, 4))
  big = random_image(gen, (64, 64, 3))
  save(tmp_path / "a.png", rgb)
  save(tmp_path / "b.png", grey, "L")
  save(tmp_path / "c.PNG", rgba, "RGBA")
  save(tmp_path / "d.png", big)
  save(tmp_path / "e.jpg", random_image(gen))
  save(tmp_path / "f.png", random_image(gen, (30, 40, 3)))
  save(tmp_path / "more" / "g.png", rgb)
  save(tmp_path / ".hidden.png", rgb)
  (tmp_path / "notes.txt").write_text("not an image")
  images, labels = open_pools.image_folder(str(tmp_path), CIFAR_SHAPE, "cifar10", 10)
  assert labels is None and len(images) == 7  # more/ names no class: the folder is unlabeled.
  got = image_source.to_array(images)
  np.testing.assert_array_equal(got[0], rgb)
  np.testing.assert_array_equal(got[1], np.repeat(grey[..., None], 3, axis=-1))
  np.testing.assert_array_equal(got[2], rgba[..., :3])
  np.testing.assert_array_equal(got[3], box_mean(big, 2))
  with Image.open(tmp_path / "e.jpg") as jpeg:
    np.testing.assert_array_equal(got[4], np.asarray(jpeg.convert("RGB")))
  assert got.shape == (7, 32, 32, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got[6], rgb)
  # Greyscale labeled data (digits-like, 8x8x1): PIL's luma, then the 4x4 block mean.
  grey_images, _ = open_pools.image_folder(str(tmp_path), (8, 8, 1), "digits", 10)
  luma = np.asarray(Image.fromarray(rgb).convert("L"))
  np.testing.assert_array_equal(grey_images.read([0])[0, ..., 0], box_mean(luma, 4))


def test_image_folder_class_subfolders_label_their_images(tmp_path):
  gen = np.random.default_rng(2)
  for folder, n in (("airplane", 2), ("7", 1), ("truck", 2)):
    for k in range(n):
      save(tmp_path / folder / "deep" / f"{k}.png", random_image(gen))
  images, labels = open_pools.image_folder(str(tmp_path), CIFAR_SHAPE, "cifar10", 10)
  np.testing.assert_array_equal(labels, [7, 0, 0, 9, 9])  # Sorted by path: 7/, airplane/, truck/
  cand = unlabeled.candidate_pool("image_folder", cifar_like(), image_folder=str(tmp_path))
  assert unlabeled.draw_rule("auto", "image_folder", cand.labels) == "labels"
  save(tmp_path / "misc" / "x.png", random_image(gen))
  with pytest.raises(DataError, match="airplane, truck name classes but these do not: misc"):
    open_pools.image_folder(str(tmp_path), CIFAR_SHAPE, "cifar10", 10)


def test_image_folder_bad_input(tmp_path):
  with pytest.raises(DataError, match="needs semi.image_folder"):
    open_pools.image_folder(None, CIFAR_SHAPE, "cifar10", 10)
  with pytest.raises(DataError, match="expected a folder of images"):
    open_pools.image_folder(str(tmp_path / "none"), CIFAR_SHAPE, "cifar10", 10)
  with pytest.raises(DataError, match="holds no .png, .jpg or .jpeg files"):
    open_pools.image_folder(str(tmp_path), CIFAR_SHAPE, "cifar10", 10)
  save(tmp_path / "deep.png", np.full((32, 32), 40000, np.uint16))
  with pytest.raises(DataError, match=r"deep.png \(a 'I;16' image: 16-bit or float"):
    open_pools.image_folder(str(tmp_path), CIFAR_SHAPE, "cifar10", 10)
  os.remove(tmp_path / "deep.png")
  save(tmp_path / "fine.png", np.full((32, 32), 40, np.uint8))
  images, _ = open_pools.image_folder(str(tmp_path), (32, 32, 2), "npz", 10)
  with pytest.raises(DataError, match="2 channels.*1 \\(greyscale\\) or 3 \\(RGB\\)"):
    images.read([0])


def test_every_broken_pool_file_is_named_at_once_before_the_base_trains(tmp_path):
  pool = tmp_path / "pool"
  digit_folder(str(pool))
  good = (pool / "0000.png").read_bytes()
  (pool / "0001.png").write_bytes(good[:len(good) // 2])  # Truncated.
  (pool / "0002.png").write_text("a text file saved as .png")
  save(pool / "0003.png", np.full((8, 8), 40000, np.uint16))  # 16-bit.
  buffer = io.BytesIO()
  Image.fromarray(random_image(np.random.default_rng(0), (64, 64))).save(buffer, "JPEG")
  (pool / "0004.jpg").write_bytes(buffer.getvalue()[:-10])  # A JPEG cut off before its end.
  config = semi_config(semi__pool_source="image_folder", semi__image_folder=str(pool))
  with pytest.raises(DataError) as info:
    pipeline.run(config, str(tmp_path / "run"))
  message = str(info.value)
  assert message.startswith("4 of the 1,259 image files cannot be used")
  for name in ("0001.png", "0002.png", "0003.png (a 'I;16' image", "0004.jpg (a truncated JPEG"):
    assert name in message, message
  assert not (tmp_path / "run" / "base").exists()  # Before the base model trained.


def test_lazy_sources_index_like_arrays(tmp_path):
  gen = np.random.default_rng(3)
  arrays = [random_image(gen, (4, 4, 3)) for _ in range(5)]
  for k, a in enumerate(arrays):
    save(tmp_path / f"{k}.png", a)
  images, _ = open_pools.image_folder(str(tmp_path), (4, 4, 3), "npz", 10)
  assert images.shape == (5, 4, 4, 3) and images.dtype == np.uint8
  subset = images[np.array([4, 1, 3])][np.array([True, False, True])]
  assert len(subset) == 2
  np.testing.assert_array_equal(image_source.to_array(subset), np.stack([arrays[4], arrays[3]]))
  np.testing.assert_array_equal(image_source.read_rows(images, 1, 3), np.stack(arrays[1:3]))
  with pytest.raises(IndexError, match="outside the 5 images"):
    images.read([5])


# --- STL-10 (TFDS) ----------------------------------------------------------------------


def test_stl10_unlabeled_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6):
    cand = unlabeled.candidate_pool("stl10_unlabeled", cifar_like(),
                                    tfds_data_dir=str(tmp_path))
    records = tfds.data_source("stl10", split="unlabelled", data_dir=str(tmp_path))
    raw = np.stack([np.asarray(records[i]["image"]) for i in range(6)])
    got = image_source.to_array(cand.images)
  assert raw.shape == (6, 96, 96, 3) and cand.labels is None
  np.testing.assert_array_equal(cand.source_indices, np.arange(6))
  np.testing.assert_array_equal(got, box_mean(raw.transpose(1, 2, 0, 3), 3).transpose(2, 0, 1, 3))
  assert unlabeled.draw_rule("auto", "stl10_unlabeled", cand.labels) == "predictions"


def test_stl10_not_prepared_says_how(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DataError, match=r"'stl10'.*tfds build stl10 --file_format=array_record"):
    open_pools.stl10_unlabeled(str(tmp_path), CIFAR_SHAPE)


def test_stl10_absent_from_tfds_default_folder_says_how(tmp_path):
  # TFDS's default folder (no semi.tfds_data_dir) raised a bare KeyError: a fresh HOME here.
  pytest.importorskip("tensorflow_datasets")
  code = ("from lt_jax.data import open_pools\n"
          "try:\n  open_pools.stl10_unlabeled(None, (32, 32, 3))\n"
          "except Exception as e:\n  print(type(e).__name__, e)\n")
  env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"} | {"HOME": str(tmp_path)}
  (tmp_path / "tensorflow_datasets" / "stl10" / "1.0.0").mkdir(parents=True)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=120)
  assert done.stdout.startswith("DataError expected the TFDS dataset 'stl10'"), (
      done.stdout + done.stderr)


# --- configs ----------------------------------------------------------------------------


def semi_config(**fields):
  c = tiny_config(dataset__img_max=40, **fields)
  c.semi.enabled = True
  c.semi.base_batch_size = 32
  return c


@pytest.mark.parametrize("fields,match", [
    ({"semi__pool_draw_on": "guess"}, "semi.pool_draw_on='guess' is unknown"),
    ({"semi__pool_source": "stl10_unlabeled", "semi__pool_draw_on": "labels"},
     "'stl10_unlabeled' has no labels"),
    ({"semi__pool_source": "cinic10"}, "needs dataset.name='cifar10'"),
    ({"dataset__name": "cifar10", "semi__pool_source": "cinic10",
      "semi__cinic10_splits": ("train", "val")}, "semi.cinic10_splits"),
    ({"semi__pool_source": "image_folder"}, "needs semi.image_folder"),
])
def test_open_pool_settings_are_checked(fields, match):
  with pytest.raises(ConfigError, match=match):
    validate(semi_config(**fields), check_data=False)


# --- end to end: a pool without labels, drawn on predictions ----------------------------


def digit_folder(folder):
  """The digits training split as 8x8 greyscale PNGs: an image folder without labels."""
  train = datasets.load("digits").train
  for k, image in enumerate(train.images):
    save(os.path.join(folder, f"{k:04d}.png"), image[..., 0], "L")
  return train.images


def test_pool_drawn_on_predictions_checks_its_total_before_training(tmp_path):
  gen = np.random.default_rng(4)
  for k in range(20):
    save(tmp_path / f"{k}.png", random_image(gen, (8, 8)), "L")
  config = semi_config(semi__pool_source="image_folder", semi__image_folder=str(tmp_path))
  drawn = semi.draw_labeled(config)
  with pytest.raises(ConfigError, match=r"asks for 790 unlabeled images but the image folder "
                                        r"holds only 20"):
    semi.draw_pool(config, drawn)
  with pytest.raises(ConfigError, match="pool_draw_on='labels' but semi.pool_source="):
    semi.draw_pool(override(config, **{"semi.pool_draw_on": "labels"}), drawn)


def test_pool_drawn_on_predictions_end_to_end(tmp_path):
  images = digit_folder(str(tmp_path / "pool"))
  # A base model trained long enough to predict classes 0..5 (its tail, 8 labeled images and
  # fewer, is never predicted), reused by the semi-supervised run through semi.base_workdir.
  base = tiny_config(train__num_epochs=4, dataset__img_max=40)
  pipeline.run(base, str(tmp_path / "base"))
  # 159 labeled digits, factor 1, rho_U 100: T = 159, floor(T / 10) = 15, raw counts
  # int(15 * 0.01 ** (i / 9)) = 15, 9, 5, 3, 1, 1, 0, 0, 0, 0 (sum 34), rescaled by 159 / 34.
  want = [72, 38, 24, 14, 4, 4, 0, 0, 0, 0]
  config = semi_config(semi__pool_source="image_folder", semi__image_folder=str(tmp_path / "pool"),
                       semi__unlabeled_factor=1, semi__unlabeled_ratio=100.0,
                       semi__base_workdir=str(tmp_path / "base"), train__num_epochs=1)
  # The pipeline's stages up to the final model's training (covered by test_pipeline.py).
  labeled, request = recipe.labeled_and_pool(config)
  assert isinstance(request, unlabeled.PoolRequest) and request.requested_counts == want
  labels_dir = tmp_path / "run" / "pseudo_labels"
  path, report = pipeline.generate_pseudo_labels(config, str(tmp_path / "base"), str(labels_dir),
                                                 request, labeled)
  labels_file = labels_dir / workdir_lib.PSEUDO_LABELS_FILE
  assert path == str(labels_file)
  saved = semi.read_pseudo_labels(path)
  assert report["requested_counts"] == want and report["pool_draw_on"] == "predictions"
  assert report["num_pool"] == sum(want) and "accuracy" not in report
  assert str(saved["pool_draw_on"]) == "predictions" and "true_labels" not in saved
  assert np.bincount(saved["pseudo_labels"], minlength=10).tolist() == want
  final_cfg = override(config, **{"semi.enabled": False,
                                  "semi.pseudo_labels": str(labels_file)})
  data = semi.training_data_with_pseudo_labels(final_cfg)
  np.testing.assert_array_equal(data.train.images[159:], images[saved["indices"]])
  np.testing.assert_array_equal(data.train.labels[159:], saved["pseudo_labels"])

  save(tmp_path / "pool" / "9999.png", images[0][..., 0], "L")  # The folder changed.
  with pytest.raises(DataError, match="different unlabeled pool.*pool_fingerprint"):
    semi.training_data_with_pseudo_labels(final_cfg)
  os.remove(tmp_path / "pool" / "9999.png")
  # A request the predicted classes cannot meet stops in the pseudo-label stage, before the
  # final stage trains, naming the short classes and how to reuse the trained base model.
  greedy = override(config, **{"semi.unlabeled_factor": 7,
                               "semi.unlabeled_ratio": 1.0})
  with pytest.raises(ConfigError, match=r"class 9: 111 asked for, the base model predicts it "
                                        r"for 0.*balancing loss.*short_class_policy="
                                        r"'take_available'.*semi.base_workdir="):
    pipeline.run(greedy, str(tmp_path / "greedy"))
  assert not (tmp_path / "greedy" / "final").exists()
  # Taking what there is: every class gets min(asked, predicted), and the report says how many
  # fell short, class by class.
  taking = override(greedy, **{"semi.short_class_policy": "take_available"})
  labeled, request = recipe.labeled_and_pool(taking)
  predicted = np.bincount(pseudo_label.predict(
      predict.load_frozen(str(tmp_path / "base")), request.candidates.images,
      labeled.mean, labeled.std)[0], minlength=10)
  asked = np.asarray(request.requested_counts)
  taken_dir = tmp_path / "taking" / "pseudo_labels"
  path, report = pipeline.generate_pseudo_labels(taking, str(tmp_path / "base"), str(taken_dir),
                                                 request, labeled)
  assert report["shortfall"] == np.maximum(asked - predicted, 0).tolist()
  assert report["shortfall"][9] == 111 and sum(report["shortfall"]) > 0
  assert report["num_pool"] == int(np.minimum(asked, predicted).sum())
  final = override(taking, **{"semi.enabled": False, "semi.pseudo_labels": path})
  data = semi.training_data_with_pseudo_labels(final)
  assert len(data.train.labels) == 159 + report["num_pool"]
