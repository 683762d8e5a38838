"""The grain input pipeline over a tree of real JPEGs (digits, resized) with an ImageNet-LT
list: sampling orders, transforms, hosts, workers and resuming."""

import numpy as np
import pytest
from conftest import assert_class_aware_cycles
from PIL import Image

from lt_jax.data import image_lists, image_pipeline, samplers
from lt_jax.data.sources import digits_arrays

SIZES = (7, 4, 2, 1)  # Images per class: a small long tail.


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("tree")
  images_0_16, targets = digits_arrays()  # scikit-learn's digits, 0..16
  rows = []
  for label, count in enumerate(SIZES):
    picks = np.flatnonzero(targets == label)[:count]
    for i in picks:
      path = tmp / "train" / f"c{label}" / f"{i}.JPEG"
      path.parent.mkdir(parents=True, exist_ok=True)
      pixels = (images_0_16[i] * 255 / 16).astype(np.uint8)
      Image.fromarray(pixels).resize((48, 40)).convert("RGB").save(path)
      rows.append(f"train/c{label}/{i}.JPEG {label}")
  (tmp / "ImageNet_LT_train.txt").write_text("\n".join(rows) + "\n")
  return image_lists.read_list(str(tmp / "ImageNet_LT_train.txt"), str(tmp), num_classes=1000)


def _all(iterable):
  return [{k: np.asarray(v) for k, v in b.items()} for b in iterable]


def test_instance_order_is_a_fresh_permutation_per_epoch():
  labels = np.repeat(np.arange(4), SIZES)
  a = samplers.epoch_order(labels, "instance", seed=0, epoch=0)
  assert sorted(a) == list(range(len(labels)))
  assert np.array_equal(a, samplers.epoch_order(labels, "instance", seed=0, epoch=0))
  assert not np.array_equal(a, samplers.epoch_order(labels, "instance", seed=0, epoch=1))


@pytest.mark.parametrize("name", ["class_balanced", "sqrt", "resample", "progressive"])
def test_with_replacement_orders_draw_their_class_probabilities(name):
  labels = np.repeat(np.arange(4), (200, 50, 20, 5))
  counts, epochs = np.bincount(labels), 30
  order = lambda e: samplers.epoch_order(labels, name, seed=1, epoch=e, num_epochs=epochs,
                                         beta=0.99)
  draws = np.concatenate([order(e) for e in range(epochs)])
  assert len(order(0)) == len(labels) and np.array_equal(order(3), order(3))
  # Class c is drawn with probability q_c: 1/C balanced, sqrt(n_c) normalised, the
  # class-balanced weight (1 - beta) / (1 - beta^n_c) times n_c normalised, and for
  # progressive the epoch's mix (1 - e/E) n_c / N + (e/E) / C, here averaged over the epochs.
  rate = {"class_balanced": np.full(4, 0.25), "sqrt": np.sqrt(counts),
          "resample": counts * (1 - 0.99) / (1 - 0.99 ** counts),
          "progressive": np.mean([(1 - e / epochs) * counts / counts.sum() + (e / epochs) / 4
                                  for e in range(epochs)], axis=0)}[name]
  q = rate / rate.sum()
  seen = np.bincount(labels[draws], minlength=4) / len(draws)
  assert np.all(np.abs(seen - q) < 4 * np.sqrt(q * (1 - q) / len(draws)))
  # Within a class, every image alike: the tail class's five are each near a fifth of it.
  tail = np.bincount(draws[labels[draws] == 3] - 270, minlength=5)
  assert np.all(np.abs(tail / tail.sum() - 0.2) < 4 * np.sqrt(0.16 / tail.sum()))


def test_class_aware_order_follows_the_reference_cycles():
  labels = np.repeat(np.arange(4), SIZES)
  k = 2
  stream = np.concatenate([samplers.epoch_order(labels, "class_aware", 0, e, k)
                           for e in range(4)])  # 56 positions: 7 rounds of 4 visits.
  assert_class_aware_cycles(labels, stream, k)


def test_train_batches_hold_the_listed_images_with_their_labels(images):
  batches = _all(image_pipeline.train_batches(
      images, batch_size=4, num_epochs=2, seed=0, augment=image_pipeline.Augment(size=32)))
  # The reference's epoch: int(14 / 4) = 3 batches, the first 12 images of the epoch's own
  # order; the 2 left over are skipped and the next epoch starts a fresh order.
  assert len(batches) == 2 * 3
  assert batches[0]["image"].shape == (4, 32, 32, 3) and batches[0]["image"].dtype == np.uint8
  order = np.concatenate([samplers.epoch_order(images.labels, "instance", 0, e)[:12]
                          for e in range(2)])
  labels = np.concatenate([b["label"] for b in batches])
  assert np.array_equal(labels, images.labels[order])


@pytest.mark.parametrize("margin, offset", [(0, 0), (1, 0), (2, 1), (3, 2), (5, 2), (7, 4)])
def test_centre_crop_offset_rounds_as_torchvision(margin, offset):
  # torchvision's CenterCrop: int(round(margin / 2.0)), round going to the even integer.
  assert image_pipeline.centre_offset(margin) == offset


def test_centre_view_of_an_odd_margin_starts_where_torchvision_does():
  pixels = np.arange(259 * 256 * 3, dtype=np.uint32).reshape(259, 256, 3) % 251
  image = Image.fromarray(pixels.astype(np.uint8))
  # Shorter side already 256: no resize; 259 - 256 = 3 rows to spare, 1.5 rounds to 2.
  view = image_pipeline.center_view(image, resize=256, crop=256)
  np.testing.assert_array_equal(view, pixels[2:258].astype(np.uint8))


def test_two_hosts_see_the_halves_of_the_same_global_batches(images):
  kwargs = dict(batch_size=4, num_epochs=1, seed=3, order="class_aware",
                augment=image_pipeline.Augment(size=32, color_jitter=True))
  one = _all(image_pipeline.train_batches(images, **kwargs))
  halves = [_all(image_pipeline.train_batches(images, process_index=h, process_count=2,
                                              **kwargs)) for h in (0, 1)]
  for b, (h0, h1) in zip(one, zip(*halves)):
    for key in ("image", "label"):
      assert np.array_equal(b[key], np.concatenate([h0[key], h1[key]]))


def test_resuming_from_the_state_gives_the_same_batches(images):
  make = lambda: iter(image_pipeline.train_batches(
      images, batch_size=4, num_epochs=2, seed=1, augment=image_pipeline.Augment(size=32)))
  it = make()
  for _ in range(3):
    next(it)
  state = it.get_state()
  rest = [next(it) for _ in range(3)]
  resumed = make()
  resumed.set_state(state)
  for a, b in zip(rest, (next(resumed) for _ in range(3))):
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])


def test_worker_processes_give_the_same_batches(images):
  kwargs = dict(batch_size=4, num_epochs=1, seed=0, augment=image_pipeline.Augment(size=32))
  alone = _all(image_pipeline.train_batches(images, **kwargs))
  workers = _all(image_pipeline.train_batches(images, num_workers=2, **kwargs))
  assert len(alone) == len(workers)
  for a, b in zip(alone, workers):
    assert np.array_equal(a["image"], b["image"])


def test_eval_batches_cover_every_image_once_in_order(images):
  batches = _all(image_pipeline.eval_batches(images, batch_size=4, resize=36, crop=32))
  mask = np.concatenate([b["mask"] for b in batches])
  assert len(mask) == 16 and mask.sum() == 14 and not mask[14:].any()
  assert np.array_equal(np.concatenate([b["label"] for b in batches])[:14], images.labels)
  first = image_lists.read_image(images, 0)  # 48 x 40: the shorter side (40) goes to 36.
  # Margins 11 and 4: torchvision starts the crop at round(5.5) = 6 and 2.
  expected = np.asarray(first.resize((43, 36), Image.BILINEAR).crop((6, 2, 38, 34)))
  assert np.array_equal(batches[0]["image"][0], expected)


@pytest.mark.parametrize("width, height", [(48, 40), (300, 40), (40, 300)])
def test_random_resized_box_stays_inside_and_in_range(width, height):
  rng = np.random.default_rng(0)
  for _ in range(200):
    left, top, right, bottom = image_pipeline.random_resized_box(width, height, rng)
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    w, h = right - left, bottom - top
    if (w, h) != (width, height) and min(w, h) > 4:  # Not the fallback; rounding aside.
      assert 0.08 * 0.8 <= w * h / (width * height) <= 1.0
      assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25


def test_color_jitter_of_zero_strength_is_the_identity(images):
  image = image_lists.read_image(images, 1)
  out = image_pipeline.color_jitter(image, np.random.default_rng(0), 0.0, 0.0, 0.0)
  assert np.array_equal(np.asarray(out), np.asarray(image))
