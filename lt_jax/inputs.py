"""What a classifier stage trains and evaluates on, whichever way its images reach the device.

  DeviceInput   uint8 arrays kept on the device (CIFAR, SVHN, digits, an npz...): the sampler
                draws indices and the augmentation runs inside the jitted step.
  StreamedInput the same data read from its files on the host a batch at a time (an image
                folder with dataset.feed='host'), drawn and augmented as DeviceInput's.
  HostInput     split lists of image files (ImageNet-LT, iNaturalist 2018): the host draws
                the order, decodes and augments (grain) and feeds one global batch a step.

A stage asks either for the same things: the facts it reports, its pure train step and the
data the driver hands that step, the evaluation splits that `predict.Predictor` runs over,
and the unlabeled stream of contrastive pre-training.
Either input also serves the rotation pretext task (`config.task='rotation'`): the step
rotates each batch, and the evaluation splits are seen under all four rotations.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import io_utils, parallel, predict, semi
from lt_jax.config import override
from lt_jax.data import augment as augment_lib
from lt_jax.data import datasets, image_lists, image_pipeline, image_source, samplers
from lt_jax.data import prepare as prepare_lib
from lt_jax.data.image_lists import ImageList
from lt_jax.errors import ConfigError, DataError
from lt_jax.pretrain import contrastive, rotation
from lt_jax.train import driver, optim
from lt_jax.train import feed as feed_lib
from lt_jax.train import objective as objective_lib
from lt_jax.train import step as step_lib

CONFUSION_FILE = "confusion.npz"  # A host-fed run's confusion matrices (1,000+ classes square).


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  """What the start-of-run summary and results.json say about a stage's training data."""
  name: str
  num_classes: int
  train_size: int
  val_size: int  # 0: no validation split.
  test_size: int
  class_counts: list[int]  # Training images per class id.
  report_counts: list[int]  # The counts that define Many / Medium / Few.
  num_labeled: int | None = None  # Labeled examples before a pseudo-labeled pool.

  @classmethod
  def of(cls, data: prepare_lib.LongTailData) -> DatasetFacts:
    return cls(name=data.name, num_classes=data.num_classes,
               train_size=int(len(data.train.labels)),
               val_size=0 if data.val is None else int(len(data.val.labels)),
               test_size=int(len(data.test.labels)),
               class_counts=[int(c) for c in data.class_counts],
               report_counts=[int(c) for c in data.report_counts],
               num_labeled=data.num_labeled)


class Input(abc.ABC):
  """A stage's training and evaluation data, as the classifier stage consumes it."""

  facts: DatasetFacts
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_shape: tuple[int, ...]  # One example's [H, W, C].
  title: str  # The data, for plot titles.
  # None: the summaries carry the confusion matrices into results.json; else the file beside
  # it that keeps them instead.
  confusion_file: str | None = None
  # Whether a grid feeds each of its models its own batch (host-fed inputs: the host draws
  # every model's order), or hands every model the data and lets each step sample it.
  batch_per_model: bool = True

  @property
  def num_classes(self) -> int:
    return self.facts.num_classes

  def write_confusion(self, workdir: str, confusion: dict[str, np.ndarray]) -> None:
    """Writes the last evaluation's confusion matrices ({split: [true, predicted] counts})
    to `confusion_file` in `workdir`, where the input keeps them beside results.json."""
    if self.confusion_file is not None:
      io_utils.atomic_write(os.path.join(workdir, self.confusion_file),
                            lambda tmp: np.savez_compressed(tmp, **confusion))

  @abc.abstractmethod
  def steps_per_epoch(self, batch_size: int) -> int:
    """Steps of one epoch at `batch_size`."""

  @abc.abstractmethod
  def check(self, config: ml_collections.ConfigDict) -> None:
    """What can only be checked once the training set is known; before any training."""

  @abc.abstractmethod
  def make_step(self, config: ml_collections.ConfigDict, model, tx,
                batch_sharding) -> driver.StepFn:
    """The pure train step (not jitted: the driver jits it)."""

  @abc.abstractmethod
  def train_data(self, config: ml_collections.ConfigDict, mesh):
    """What the step takes besides the state: device arrays, or a feed of batches."""

  def grid_train_data(self, cohorts: list[list[ml_collections.ConfigDict]], mesh):
    """What a grid program's step takes besides its stacked state, for its models' configs
    cohort by cohort (a cohort padded as its stacked state is): the shared training data,
    or one feed of a batch per model (`feed.stacked`)."""
    if not self.batch_per_model:
      return self.train_data(cohorts[0][0], mesh)
    return feed_lib.stacked([[self.train_data(c, mesh) for c in cohort] for cohort in cohorts],
                            parallel.models_and_batch_sharded(mesh))

  @abc.abstractmethod
  def eval_splits(self, config: ml_collections.ConfigDict, predictor: predict.Predictor
                  ) -> dict[str, predict.Split]:
    """The test split, and the validation split where there is one, for the predictor."""

  @abc.abstractmethod
  def pretrain_data(self, config: ml_collections.ConfigDict, mesh):
    """What contrastive pre-training's step takes besides the state: the training images
    alone (labels unused), at pretrain.batch_size for pretrain.num_epochs."""

  def _step_options(self, config, model, tx, batch_sharding) -> dict:
    """What every classifier step takes besides its batch: the model, the objective over the
    training counts, the schedule, the pretext task and the mixed batches' split."""
    tr = config.train
    spe = self.steps_per_epoch(tr.batch_size)
    return dict(
        model=model, tx=tx, objective=objective_lib.make_objective(config, self.facts.class_counts),
        mean=self.mean, std=self.std, steps_per_epoch=spe,
        schedule=optim.make_schedule(config.optim, tr.num_epochs, spe),
        batch_sharding=batch_sharding, task_transform=_task_transform(config),
        labeled_per_batch=labeled_per_batch(config, self.facts.num_labeled),
        unlabeled_weight=config.semi.unlabeled_weight)


# --- arrays on the device -------------------------------------------------------------------


class DeviceInput(Input):
  """uint8 arrays on the device: sampled and augmented inside the step."""

  batch_per_model = False

  def __init__(self, data: prepare_lib.LongTailData, title: str | None = None):
    self.data = data
    self.facts = DatasetFacts.of(data)
    self.mean, self.std = tuple(data.mean), tuple(data.std)
    self.image_shape = tuple(data.train.images.shape[1:])
    self.title = title or f"{data.name}-LT"

  def steps_per_epoch(self, batch_size: int) -> int:
    return samplers.steps_per_epoch(len(self.data.train.labels), batch_size)

  def check(self, config: ml_collections.ConfigDict) -> None:
    """A batch drawn without replacement must fit in the training set (a larger one would
    repeat images)."""
    tr, n = config.train, len(self.data.train.labels)
    mixed = self.labeled_per_batch(config) is not None  # A mixed sampler checks its sizes.
    if not mixed and objective_lib.sampler_for(tr.rule, tr.sampler) == "instance" and \
        tr.batch_size > n:
      raise ConfigError(
          f"{_batch_field(config)}={tr.batch_size} is larger than the training set ({n} "
          f"images), so every batch would repeat images; set it to at most {n} (a "
          "semi-supervised base model trains with semi.base_batch_size, rotation "
          "pre-training with pretrain.batch_size).")

  def make_step(self, config, model, tx, batch_sharding) -> driver.StepFn:
    return functools.partial(step_lib.train_step, sampler=self._sampler(config),
                             **self._step_options(config, model, tx, batch_sharding))

  def _step_options(self, config, model, tx, batch_sharding) -> dict:
    """The shared options and the augmentation, drawn on the device."""
    return super()._step_options(config, model, tx, batch_sharding) | {
        "augment": augment_lib.make_augment(config.augment.name, config.augment.crop_padding)}

  def train_data(self, config, mesh) -> step_lib.DeviceData:
    return put_split(self.data.train.images, self.data.train.labels,
                     parallel.replicated(mesh))

  def pretrain_data(self, config, mesh) -> jax.Array:
    """The uint8 images on the device: the step samples them and draws both views."""
    return parallel.put(self.data.train.images, parallel.replicated(mesh))

  def eval_splits(self, config, predictor) -> dict[str, predict.DeviceSplit]:
    return {name: predictor.put(split.images, split.labels)
            for name, split in self._evaluated().items()}

  def _evaluated(self) -> dict:
    return evaluation_splits({"test": self.data.test, "val": self.data.val})

  def labeled_per_batch(self, config) -> int | None:
    return labeled_per_batch(config, self.data.num_labeled)

  def _sampler(self, config) -> samplers.Sampler:
    tr, data = config.train, self.data
    labeled = self.labeled_per_batch(config)
    if labeled is not None:
      return samplers.make_mixed_sampler(data.num_labeled, len(data.train.labels) -
                                         data.num_labeled, tr.batch_size, labeled)
    return samplers.make_sampler(
        objective_lib.sampler_for(tr.rule, tr.sampler), data.train.labels, data.num_classes,
        tr.batch_size, num_epochs=tr.num_epochs, beta=tr.cb_beta,
        samples_per_class=tr.samples_per_class)


class StreamedInput(DeviceInput):
  """DeviceInput's data read from its files on the host a batch at a time (dataset.feed=
  'host': an image folder too large to hold decoded). The host draws each step's indices with
  the device sampler itself, keyed as the device-resident step keys it, reads those images
  and feeds them; the step augments them on the device with the same key. So a run equals the
  device-resident run of the same data, batch for batch."""

  batch_per_model = True

  def make_step(self, config, model, tx, batch_sharding) -> driver.StepFn:
    return functools.partial(step_lib.train_step_on_batch,
                             **self._step_options(config, model, tx, batch_sharding))

  def train_data(self, config, mesh) -> feed_lib.HostFeed:
    tr = config.train
    return self._feed(lambda: (self._sampler(config), step_lib.sampler_key(config.seed)),
                      tr.batch_size, tr.num_epochs, mesh, stream={
                          "seed": config.seed, **order_stream(config),
                          "labeled_per_batch": self.labeled_per_batch(config)})

  def pretrain_data(self, config, mesh) -> feed_lib.HostFeed:
    """The batches the device-resident contrastive step samples, read on the host."""
    epochs, batch = pretrain_epochs_and_batch(config)
    method = config.pretrain.method
    return self._feed(lambda: (pretrain_sampler(config, self.data),
                               contrastive.sampler_key(method, config.seed)),
                      batch, epochs, mesh, stream={"seed": config.seed, "pretrain": method})

  def _feed(self, sampler_and_key: Callable, batch_size: int, num_epochs: int, mesh,
            stream: dict) -> feed_lib.HostFeed:
    """This host's rows of the batches that `sampler_and_key()`'s device sampler draws, each
    step's indices computed on the host's CPU, then read from the files."""
    train = self.data.train
    sharding = parallel.batch_sharded(mesh)
    rows = image_pipeline.host_rows(batch_size, jax.process_index(), jax.process_count())
    total = self.steps_per_epoch(batch_size) * num_epochs
    labels = np.asarray(train.labels)

    def batches_from(step: int):
      with jax.default_device(jax.devices("cpu")[0]):  # Beside the decoding, off the device.
        sampler, key = sampler_and_key()
        draw = jax.jit(lambda t: sampler(key, t))
        for t in range(step, total):
          idx = np.asarray(draw(jnp.int32(t)))[rows]
          yield {"image": image_source.to_array(image_source.take(train.images, idx)),
                 "label": labels[idx].astype(np.int32)}

    spec = {"image": jax.ShapeDtypeStruct((batch_size, *self.image_shape), jnp.uint8,
                                          sharding=sharding),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding)}
    stream = {"images": train.images.fingerprint, "train_size": len(labels),
              "labels_sha256": hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest(),
              "batch_size": batch_size, **stream}
    return feed_lib.HostFeed(batches_from, sharding, spec=spec, stream=stream)

  def eval_splits(self, config, predictor) -> dict[str, predict.HostImages]:
    return {name: predict.HostImages(split.images, np.asarray(split.labels))
            for name, split in self._evaluated().items()}


def of_arrays(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData,
              title: str | None = None) -> DeviceInput:
  """The input of a device-resident dataset: held on the device, or read from its files on
  the host each step (dataset.feed='host')."""
  kind = StreamedInput if config.dataset.feed == "host" else DeviceInput
  return kind(data, title)


def labeled_per_batch(config: ml_collections.ConfigDict, num_labeled: int | None) -> int | None:
  """Labeled examples per batch when batches mix a fixed proportion of pseudo-labeled ones
  (semi.unlabeled_batch_fraction, on a training set whose first `num_labeled` are labeled)."""
  fraction = config.semi.unlabeled_batch_fraction
  if num_labeled is None or not fraction:
    return None
  return int(round(config.train.batch_size * (1.0 - fraction)))


def pretrain_sampler(config: ml_collections.ConfigDict, data: prepare_lib.LongTailData
                     ) -> samplers.Sampler:
  """Contrastive pre-training's device sampler: instance order at pretrain's batch."""
  _, batch = pretrain_epochs_and_batch(config)
  return samplers.make_sampler("instance", data.train.labels, data.num_classes, batch)


def pretrain_epochs_and_batch(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """Pre-training's epochs and global batch: pretrain.*, else the train.* values."""
  pre = config.pretrain
  return (pre.num_epochs or config.train.num_epochs), (pre.batch_size or config.train.batch_size)


def put_split(images, labels, sharding) -> step_lib.DeviceData:
  return step_lib.DeviceData(parallel.put(images, sharding),
                             parallel.put(np.asarray(labels).astype(np.int32), sharding))


def _batch_field(config) -> str:
  """The field that set train.batch_size: rotation pre-training takes pretrain.batch_size."""
  return ("pretrain.batch_size" if config.task == "rotation" and config.pretrain.batch_size
          else "train.batch_size")


def _task_transform(config) -> Callable | None:
  return rotation.rotate_batch if config.task == "rotation" else None


# --- image lists decoded on the host --------------------------------------------------------


class HostInput(Input):
  """A list dataset's splits, decoded on the host and fed a global batch a step. Many /
  Medium / Few group by the training list's counts."""

  confusion_file = CONFUSION_FILE

  def __init__(self, config: ml_collections.ConfigDict, splits: dict[str, ImageList | None],
               labeled: ImageList | None = None):
    """`labeled`: the labeled training list where splits['train'] adds pseudo-labeled pool
    rows to it; its counts define Many / Medium / Few."""
    ds = config.dataset
    spec = datasets.get(ds.name)
    self.splits = splits
    self.rotation = config.task == "rotation"
    num_classes = list_classes(ds.name, splits)
    counts = [int(c) for c in splits["train"].class_counts(num_classes)]
    report = counts if labeled is None else [int(c) for c in labeled.class_counts(num_classes)]
    times = rotation.NUM_ROTATIONS if self.rotation else 1
    train_size = len(splits["train"])
    if self.rotation:  # Every rotation is equally likely for every image.
      counts = report = [train_size] * rotation.NUM_ROTATIONS
    self.facts = DatasetFacts(
        name=ds.name, num_classes=len(counts), train_size=train_size,
        val_size=0 if splits["val"] is None else times * len(splits["val"]),
        test_size=times * len(splits["test"]), class_counts=counts, report_counts=report,
        num_labeled=None if labeled is None else len(labeled))
    self.mean, self.std = tuple(spec.mean), tuple(spec.std)
    self.image_shape = (ds.image_size, ds.image_size, 3)
    self.title = ds.name

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> HostInput:
    """The dataset's lists; a semi-supervised final stage's training list also holds the
    kept pool images with their pseudo-labels (semi.pseudo_labels)."""
    splits = read_splits(config.dataset)
    if not config.semi.pseudo_labels:
      return cls(config, splits)
    train = semi.training_list_with_pseudo_labels(
        config, splits, list_classes(config.dataset.name, splits))
    return cls(config, splits | {"train": train}, labeled=splits["train"])

  def steps_per_epoch(self, batch_size: int) -> int:
    return image_pipeline.steps_per_epoch(self.facts.train_size, batch_size)

  def check(self, config) -> None:
    tr = config.train
    if not self.rotation:
      check_counts_for_objective(config, np.asarray(self.facts.class_counts),
                                 self.splits["train"].list_path)
    if tr.batch_size > self.facts.train_size:
      raise ConfigError(f"{_batch_field(config)}={tr.batch_size} is larger than the training "
                        f"list ({self.facts.train_size} images), so an epoch of int(N / B) "
                        f"steps would be empty; set it to at most {self.facts.train_size}.")

  def make_step(self, config, model, tx, batch_sharding) -> driver.StepFn:
    return functools.partial(step_lib.train_step_on_batch,
                             **self._step_options(config, model, tx, batch_sharding))

  def train_data(self, config, mesh) -> feed_lib.HostFeed:
    return train_feed(config, self.splits["train"], parallel.batch_sharded(mesh),
                      num_labeled=self.facts.num_labeled)

  def pretrain_data(self, config, mesh) -> feed_lib.HostFeed:
    """The training list in instance order, each image decoded once and cropped twice on the
    host (`TwoCrops`: RandomResizedCrop(image_size, scale pretrain.crop_scale), keyed by
    (seed, stream position)); the step draws the rest of both views."""
    epochs, batch = pretrain_epochs_and_batch(config)
    if batch > self.facts.train_size:
      raise ConfigError(f"pretrain.batch_size={batch} is larger than the training list "
                        f"({self.facts.train_size} images), so every batch would repeat "
                        f"images; set it to at most {self.facts.train_size}.")
    stream = override(config, **{"train.sampler": "instance", "train.rule": "none",
                                 "train.batch_size": batch, "train.num_epochs": epochs})
    crops = image_pipeline.TwoCrops(size=config.dataset.image_size,
                                    scale=tuple(config.pretrain.crop_scale))
    return train_feed(stream, self.splits["train"], parallel.batch_sharded(mesh),
                      transform=crops)

  def eval_splits(self, config, predictor) -> dict[str, predict.HostBatches]:
    out = {name: fed_split(config, images, predictor.mesh)
           for name, images in evaluation_splits(self.splits).items()}
    return {name: rotated(split) for name, split in out.items()} if self.rotation else out


def labeled(config: ml_collections.ConfigDict) -> Input:
  """The labeled long-tailed set alone: no pseudo-labeled pool, no pretext task (what the
  decoupled classifiers re-score stage 1's outputs on)."""
  if datasets.get(config.dataset.name).host_fed:
    return HostInput.of(config)
  return of_arrays(config, prepare_lib.prepare(config.dataset))


def rotated(split: predict.HostBatches) -> predict.HostBatches:
  """Every batch of `split` under the four rotations, labelled by the rotation."""

  def batches():
    for batch in split.make():
      for k in range(rotation.NUM_ROTATIONS):
        yield {"image": np.ascontiguousarray(np.rot90(batch["image"], k, axes=(1, 2))),
               "label": np.full_like(batch["label"], k), "mask": batch["mask"]}
  n = split.num_examples
  return predict.HostBatches(batches, None if n is None else rotation.NUM_ROTATIONS * n)


def read_splits(ds: ml_collections.ConfigDict) -> dict[str, ImageList | None]:
  """{'train', 'val', 'test'} image lists (val None for iNaturalist 2018, whose validation
  list is its test set); every listed image must exist."""
  spec = datasets.get(ds.name)
  lists = {split: image_lists.read_list(image_lists.list_path(ds.lists_dir, spec, split),
                                        ds.data_dir, spec.num_classes)
           for split in image_lists.present_splits(ds.lists_dir, spec)}
  if "test" in spec.splits:
    return {"train": lists["train"], "val": lists.get("val"), "test": lists["test"]}
  return {"train": lists["train"], "val": None, "test": lists["val"]}


def list_classes(name: str, splits: dict[str, ImageList | None]) -> int:
  """The dataset's classes: its registry entry's, else 1 + the largest label listed."""
  return datasets.get(name).num_classes or 1 + max(
      int(images.labels.max()) for images in splits.values() if images is not None)


def evaluation_splits(splits: dict) -> dict:
  """The splits every evaluation reports: test, and val where the dataset has one."""
  return {name: splits[name] for name in ("test", "val") if splits[name] is not None}


def check_counts_for_objective(config: ml_collections.ConfigDict, counts: np.ndarray,
                               list_path: str) -> None:
  """A class without training images has no class-balanced weight, margin or prior."""
  tr, loss = config.train, config.loss
  empty = np.flatnonzero(counts == 0)
  uses_counts = objective_lib.uses_class_counts(tr.rule, loss.name)
  if not empty.size or uses_counts is None:
    return
  raise DataError(f"{list_path} lists no training image for {empty.size} of the "
                  f"{len(counts)} classes (e.g. {', '.join(map(str, empty[:5]))}), but "
                  f"{uses_counts} needs every class's count; use the complete training list, "
                  "or train.rule='none' with loss.name="
                  + " or ".join(repr(n) for n, entry in objective_lib.LOSSES.items()
                                if not entry.uses_counts) + ".")


def train_transform(config: ml_collections.ConfigDict):
  """augment.name on the host: crop_flip is the reference's ImageNet transform
  (RandomResizedCrop + flip, + colour jitter for ImageNet-LT); none is the evaluation view."""
  ds = config.dataset
  if config.augment.name == "none":
    return image_pipeline.CenterView(size=ds.image_size, resize=ds.resize_size)
  return image_pipeline.Augment(
      size=ds.image_size, color_jitter=datasets.get(ds.name).color_jitter)


def train_feed(config: ml_collections.ConfigDict, images: ImageList, batch_sharding,
               transform=None, num_labeled: int | None = None) -> feed_lib.HostFeed:
  """The training stream: this host's rows of every global batch, from any step on, in
  train.sampler's order with train.batch_size and train.num_epochs (mixed batches where the
  first `num_labeled` images are labeled and semi.unlabeled_batch_fraction is set);
  `transform` (default `train_transform(config)`) makes each example's images (its
  `fields`)."""
  ds, tr = config.dataset, config.train
  transform = transform or train_transform(config)
  labeled = labeled_per_batch(config, num_labeled)
  order = objective_lib.sampler_for(tr.rule, tr.sampler)

  def batches_from(step: int):
    return image_pipeline.train_batches(
        images, batch_size=tr.batch_size, num_epochs=tr.num_epochs, seed=config.seed,
        order=order, samples_per_class=tr.samples_per_class, augment=transform,
        num_workers=ds.num_workers, process_index=jax.process_index(),
        process_count=jax.process_count(), start_step=step, labeled_per_batch=labeled,
        num_labeled=num_labeled, beta=tr.cb_beta)

  size, batch = ds.image_size, tr.batch_size
  spec = {name: jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8,
                                     sharding=batch_sharding) for name in transform.fields}
  spec["label"] = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=batch_sharding)
  stream = {"list": images.list_path, "list_sha256": io_utils.sha256_file(images.list_path),
            "images": len(images), "seed": config.seed, **order_stream(config),
            "batch_size": batch, "transform": repr(transform)}
  if config.semi.pseudo_labels:  # The list's rows past its own are the kept pool's.
    stream["pseudo_labels_sha256"] = io_utils.sha256_file(config.semi.pseudo_labels)
  if labeled is not None:
    stream["labeled_per_batch"] = labeled
  return feed_lib.HostFeed(batches_from, batch_sharding, spec=spec, stream=stream)


def order_stream(config: ml_collections.ConfigDict) -> dict:
  """What decides a training order besides the seed and the data: the sampler and the fields
  of its law (a feed's stream records them, so a resumed run, or a grid model that shares
  another's stream, reads the very same batches)."""
  tr = config.train
  order = objective_lib.sampler_for(tr.rule, tr.sampler)
  out = {"order": order, "samples_per_class": tr.samples_per_class}
  if order == "resample":
    out["cb_beta"] = tr.cb_beta
  if order == "progressive":  # Its class probabilities move with the epoch / num_epochs.
    out["num_epochs"] = tr.num_epochs
  return out


def fed_split(config: ml_collections.ConfigDict, images: ImageList, mesh
              ) -> predict.HostBatches:
  """A list split as the predictor reads it: this host's rows of padded, masked batches of
  centre views (dataset.resize_size, then dataset.image_size), train.eval_batch_size per
  global batch rounded up to a multiple of the mesh's devices."""
  ds = config.dataset
  make = functools.partial(
      image_pipeline.eval_batches, images,
      batch_size=parallel.padded_batch_size(config.train.eval_batch_size, mesh),
      resize=ds.resize_size, crop=ds.image_size, num_workers=ds.num_workers,
      process_index=jax.process_index(), process_count=jax.process_count())
  return predict.HostBatches(make, num_examples=len(images))
