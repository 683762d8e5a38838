"""A host input pipeline for image folders too large for the device (ImageNet-LT, iNaturalist),
built on grain: JPEG decoding and augmentation in worker processes, batches of uint8 images.

- Order. A global stream of image indices, one epoch after another: `instance` (a fresh
  permutation per epoch) or `class_aware` (the reference's ClassAwareSampler: classes from a
  reshuffled cycle, `samples_per_class` images of a class in a row, each class's images from
  their own reshuffled cycle). Both are pure functions of (seed, epoch), so any position of the
  stream can be recomputed.
- Hosts. The stream is cut into global batches; host h of P decodes rows [h B/P, (h+1) B/P) of
  each, so the global batch is the same whatever the number of hosts.
- Transforms, with a generator keyed by (seed, position in the stream), so the same position
  gets the same crop after a restart and on any number of hosts or workers. Contrastive
  pre-training (`TwoCrops`) takes two random resized crops per image ('view_a', 'view_b');
  the step draws the rest of each view on the device. Training:
  RandomResizedCrop(224) (scale 0.08-1, ratio 3/4-4/3, ten tries then a centre crop, as
  torchvision) + horizontal flip (+ ColorJitter(0.4, 0.4, 0.4) in a random order for
  ImageNet-LT, as the reference). Evaluation: Resize(256) + CenterCrop(224), in list order,
  padded to whole batches with a mask.
- State. `iterator.get_state()` is a small dict that goes into the checkpoint;
  `set_state` resumes the same epoch at the same batch with the same images.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from absl import flags
from PIL import Image, ImageEnhance

from lt_jax.data import samplers
from lt_jax.data.image_lists import ImageList, read_image
from lt_jax.errors import ConfigError

if TYPE_CHECKING:
  import grain

class _Stream:
  """Position -> image index over `num_epochs` epochs, one epoch computed at a time."""

  def __init__(self, labels, order: str, seed: int, num_epochs: int, samples_per_class: int,
               beta: float):
    self._labels, self._order, self._seed = np.asarray(labels), order, seed
    self._k, self._epochs, self._beta = samples_per_class, num_epochs, beta
    self._cached: tuple[int, np.ndarray] | None = None

  def __len__(self) -> int:
    return len(self._labels) * self._epochs

  def __getitem__(self, position: int) -> int:
    epoch, within = divmod(int(position), len(self._labels))
    if self._cached is None or self._cached[0] != epoch:
      self._cached = (epoch, samplers.epoch_order(
          self._labels, self._order, self._seed, epoch, self._k, num_epochs=self._epochs,
          beta=self._beta))
    return int(self._cached[1][within])

  def index(self, step: int, row: int, position: int) -> int:
    del step, row
    return self[position]


class _MixedStream:
  """(step, row of the global batch) -> image index: `samplers.MixedOrder`."""

  def __init__(self, order: samplers.MixedOrder):
    self._order = order

  def index(self, step: int, row: int, position: int) -> int:
    del position
    return self._order.index(step, row)


@dataclasses.dataclass(frozen=True)
class Augment:
  """The training transform: random resized crop to `size`, flip, optional colour jitter."""

  fields: ClassVar[tuple[str, ...]] = ("image",)  # What an example holds besides its label.
  size: int = 224
  color_jitter: bool = False
  scale: tuple[float, float] = (0.08, 1.0)
  ratio: tuple[float, float] = (3 / 4, 4 / 3)

  def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    box = random_resized_box(image.width, image.height, rng, self.scale, self.ratio)
    image = image.resize((self.size, self.size), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
      image = image.transpose(Image.FLIP_LEFT_RIGHT)
    if self.color_jitter:
      image = color_jitter(image, rng, 0.4, 0.4, 0.4)
    return np.asarray(image, np.uint8)


@dataclasses.dataclass(frozen=True)
class CenterView:
  """The evaluation view as a training transform (no augmentation: a linear probe, cRT
  without augmentation): resize the shorter side to `resize`, central `size` crop."""

  fields: ClassVar[tuple[str, ...]] = ("image",)
  size: int = 224
  resize: int = 256

  def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    del rng
    return center_view(image, self.resize, self.size)


@dataclasses.dataclass(frozen=True)
class TwoCrops:
  """Contrastive pre-training's host half: two random resized crops of one image (MoCo v2's
  RandomResizedCrop(size, scale 0.2-1) twice, the first drawn first from the position's
  generator). The rest of each view (colour jitter, grayscale, blur, flip) is drawn on the
  device by the step (pretrain/augment.py with crop=False)."""

  fields: ClassVar[tuple[str, ...]] = ("view_a", "view_b")
  size: int = 224
  scale: tuple[float, float] = (0.2, 1.0)
  ratio: tuple[float, float] = (3 / 4, 4 / 3)

  def __call__(self, image: Image.Image, rng: np.random.Generator) -> dict[str, np.ndarray]:
    views = {}
    for name in self.fields:
      box = random_resized_box(image.width, image.height, rng, self.scale, self.ratio)
      views[name] = np.asarray(image.resize((self.size, self.size), Image.BILINEAR, box=box),
                               np.uint8)
    return views


def random_resized_box(width: int, height: int, rng: np.random.Generator,
                       scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """torchvision's RandomResizedCrop box (left, top, right, bottom): area fraction uniform in
  `scale`, log aspect ratio uniform in `ratio`, ten tries, then the central crop of the
  ratio clamped into `ratio`."""
  area = width * height
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      left = int(rng.integers(0, width - w + 1))
      top = int(rng.integers(0, height - h + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def color_jitter(image: Image.Image, rng: np.random.Generator, brightness: float,
                 contrast: float, saturation: float) -> Image.Image:
  """Brightness, contrast and saturation factors uniform in [1 - x, 1 + x], applied in a
  random order (torchvision's ColorJitter with hue 0)."""
  enhancers = [(ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
               (ImageEnhance.Color, saturation)]
  for i in rng.permutation(len(enhancers)):
    enhance, x = enhancers[i]
    image = enhance(image).enhance(rng.uniform(max(0.0, 1 - x), 1 + x))
  return image


def center_view(image: Image.Image, resize: int = 256, crop: int = 224) -> np.ndarray:
  """Resize the shorter side to `resize` (bilinear), then the central `crop` x `crop`."""
  w, h = image.size
  if w <= h:
    size = (resize, int(resize * h / w))
  else:
    size = (int(resize * w / h), resize)
  image = image.resize(size, Image.BILINEAR)
  left, top = centre_offset(size[0] - crop), centre_offset(size[1] - crop)
  return np.asarray(image.crop((left, top, left + crop, top + crop)), np.uint8)


def centre_offset(margin: int) -> int:
  """Where a centre crop starts in a side `margin` pixels longer than the crop: torchvision's
  CenterCrop, int(round(margin / 2)), Python's round going to the even integer at .5 (margin
  1 -> 0, 3 -> 2, 5 -> 2, 7 -> 4)."""
  return int(round(margin / 2.0))


def steps_per_epoch(num_images: int, batch_size: int) -> int:
  """int(N / B), the reference's epoch (run_networks.py: `epoch_steps`): the images of an
  epoch's order that fill no whole batch are skipped, and the next epoch starts afresh."""
  return num_images // batch_size


def host_rows(batch_size: int, process_index: int, process_count: int) -> slice:
  """Host h of P reads rows [h B/P, (h+1) B/P) of every global batch of B."""
  if batch_size % process_count:
    raise ConfigError(f"train.batch_size={batch_size} must divide evenly over "
                      f"{process_count} hosts.")
  per_host = batch_size // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def train_batches(images: ImageList, *, batch_size: int, num_epochs: int, seed: int,
                  order: str = "instance", samples_per_class: int = 4,
                  augment: Augment | CenterView | TwoCrops = Augment(), num_workers: int = 0,
                  process_index: int = 0, process_count: int = 1, start_step: int = 0,
                  labeled_per_batch: int | None = None, num_labeled: int | None = None,
                  beta: float = 0.9999) -> grain.IterDataset:
  """{'image': uint8 [B/P, S, S, 3], 'label': int32 [B/P]} for this host (each of
  `augment.fields` in place of 'image': TwoCrops gives 'view_a' and 'view_b'): int(N / B)
  batches an epoch, each epoch from the start of its own order, `num_epochs` epochs, from
  batch `start_step` on (a resumed run's first step). Each image's augmentation draws from a
  generator keyed by (seed, its position in the stream), so it does not depend on the number
  of hosts or workers, nor on where the stream was started. With `labeled_per_batch`, the
  first `num_labeled` images are labeled and every batch holds that many of them first, the
  rest from the others (`samplers.MixedOrder`; `order` must be instance). `beta`: the
  resample rule's class-balanced beta."""
  if order not in samplers.host_samplers():
    raise ConfigError(f"train.sampler={order!r} has no host pipeline; choose one of "
                      f"{samplers.host_samplers()}.")
  rows = host_rows(batch_size, process_index, process_count)
  per_host = rows.stop - rows.start
  spe = steps_per_epoch(len(images), batch_size)
  if spe == 0:
    raise ConfigError(f"a batch of {batch_size} is larger than the {len(images)} training "
                      "images: an epoch of int(N / B) batches would be empty.")
  steps = spe * num_epochs
  if labeled_per_batch is None:
    stream = _Stream(images.labels, order, seed, num_epochs, samples_per_class, beta)
  elif order != "instance":
    raise ConfigError(f"mixed labeled / pseudo-labeled batches draw their own order; set "
                      f"train.sampler='instance', not {order!r}.")
  else:
    stream = _MixedStream(samplers.MixedOrder(num_labeled, len(images) - num_labeled,
                                              batch_size, labeled_per_batch, seed))

  def load(i: int) -> dict:
    step, row = divmod(i, per_host)
    epoch, within = divmod(step, spe)
    position = epoch * len(images) + within * batch_size + rows.start + row
    index = stream.index(step, rows.start + row, position)
    rng = np.random.default_rng([seed, 3, position])
    out = augment(read_image(images, index), rng)
    return (out if isinstance(out, dict) else {"image": out}) | {
        "label": np.int32(images.labels[index])}

  if not 0 <= start_step <= steps:
    raise ValueError(f"start_step={start_step} is outside the stream's {steps} batches.")
  import grain  # Here, not at the top: runs on in-memory arrays never need grain.
  data = grain.MapDataset.range(start_step * per_host, steps * per_host).map(load).batch(
      per_host, drop_remainder=True)
  return _prefetch(data.to_iter_dataset(), num_workers)


def _prefetch(iterable: grain.IterDataset, num_workers: int) -> grain.IterDataset:
  if not num_workers:
    return iterable
  if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; a notebook parses none.
    flags.FLAGS.mark_as_parsed()
  import grain
  return iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))


def eval_batches(images: ImageList, *, batch_size: int, resize: int = 256, crop: int = 224,
                 num_workers: int = 0, process_index: int = 0, process_count: int = 1
                 ) -> grain.IterDataset:
  """{'image', 'label', 'mask'} over every image once, in list order, the last batch padded
  (mask False) so that every host sees whole batches."""
  n = len(images)
  steps = -(-n // batch_size)
  rows = host_rows(batch_size, process_index, process_count)

  def load(position):
    if position >= n:
      return {"image": np.zeros((crop, crop, 3), np.uint8), "label": np.int32(0),
              "mask": np.bool_(False)}
    return {"image": center_view(read_image(images, position), resize, crop),
            "label": np.int32(images.labels[position]), "mask": np.bool_(True)}

  per_host = rows.stop - rows.start
  import grain
  data = grain.MapDataset.range(steps * per_host).map(
      lambda i: load(i // per_host * batch_size + rows.start + i % per_host))
  return _prefetch(data.batch(per_host, drop_remainder=True).to_iter_dataset(), num_workers)
