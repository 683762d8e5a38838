"""The supervised stage on ImageNet-LT and iNaturalist 2018: image folders with split lists,
decoded and augmented on the host, fed to the device one global batch per step.

`train_and_evaluate(config, workdir)` reads the lists (every image checked before training),
builds the model, the host feed (data/image_pipeline.py through train/feed.py), the batch-fed
step and the host-fed evaluator, hands them to the driver, and writes the results.json and the
per-class plot that every classifier stage writes (classify.py's helpers). Many / Medium / Few
are grouped by the training list's class counts. The confusion matrices (1,000 or 8,142
classes square) go to confusion.npz rather than into results.json.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import classify, io_utils, models, parallel, predict, results
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.data import datasets, image_lists, image_pipeline
from lt_jax.data.image_lists import ImageList
from lt_jax.errors import ConfigError, DataError
from lt_jax.train import driver, optim
from lt_jax.train import feed as feed_lib
from lt_jax.train import objective as objective_lib
from lt_jax.train import step as step_lib

CONFUSION_FILE = "confusion.npz"  # The last evaluation's confusion matrix per split.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates one classifier on a list dataset; returns (and writes) its
  results.json content. A finished workdir is read back, not retrained."""
  finished = classify.checked_or_finished(config, workdir)
  if finished is not None:
    return finished
  ds, tr = config.dataset, config.train
  spec = datasets.get(ds.name)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(tr.batch_size, mesh, "train.batch_size")
  splits = read_splits(ds)
  counts = splits["train"].class_counts(spec.num_classes)
  facts = classify.DatasetFacts(
      name=ds.name, num_classes=spec.num_classes, train_size=len(splits["train"]),
      val_size=0 if splits["val"] is None else len(splits["val"]),
      test_size=len(splits["test"]), class_counts=counts.tolist(),
      report_counts=counts.tolist())
  classify.print_counts(facts)
  check_counts_for_objective(config, counts, splits["train"].list_path)
  if tr.batch_size > facts.train_size:
    raise ConfigError(f"train.batch_size={tr.batch_size} is larger than the training list "
                      f"({facts.train_size} images), so an epoch of int(N / B) steps would be "
                      f"empty; set it to at most {facts.train_size}.")
  spe = image_pipeline.steps_per_epoch(facts.train_size, tr.batch_size)
  model = models.from_config(config.model, spec.num_classes)
  tx = optim.make_optimizer(config.optim, tr.num_epochs, spe,
                            frozen=classify.frozen_parameters(config))
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  size = ds.image_size
  state = step_lib.create_state(model, tx, (size, size, 3), config.seed, replicated)
  step = functools.partial(
      step_lib.train_step_on_batch, model=model, tx=tx,
      objective=objective_lib.make_objective(config, counts), mean=spec.mean, std=spec.std,
      steps_per_epoch=spe, schedule=optim.make_schedule(config.optim, tr.num_epochs, spe),
      batch_sharding=batch_sharding)
  evaluator = ListEvaluator(config, splits, model, mesh, counts)
  selection = results.resolve_selection(config)
  print(workdir_lib.write_parameter_table(workdir, state.params), flush=True)
  trained = driver.train(
      workdir, state, step, train_feed(config, splits["train"], batch_sharding),
      classify.plan(config, spe), state_sharding=replicated,
      evaluate=classify.epoch_eval_hook(evaluator, selection),
      initialize=classify.backbone_initializer(config, replicated),
      keep_best=selection != "last", log=lambda line: print(line, flush=True))
  evaluator.write_confusion(os.path.join(workdir, CONFUSION_FILE))
  return classify.write_outputs(
      config, workdir, facts, trained, selection,
      title=f"{ds.name}, {config.model.name}, {config.loss.name}, rule {tr.rule}, "
            f"sampler {tr.sampler}")


def read_splits(ds: ml_collections.ConfigDict) -> dict[str, ImageList | None]:
  """{'train', 'val', 'test'} image lists (val None for iNaturalist 2018, whose validation
  list is its test set); every listed image must exist."""
  spec = datasets.get(ds.name)
  lists = {split: image_lists.read_list(image_lists.list_path(ds.lists_dir, spec, split),
                                        ds.data_dir, spec.num_classes)
           for split in spec.splits}
  if "test" in lists:
    return {"train": lists["train"], "val": lists["val"], "test": lists["test"]}
  return {"train": lists["train"], "val": None, "test": lists["val"]}


# What weighs or shifts classes by their training counts, so needs every class in the list.
COUNT_RULES, COUNT_LOSSES = ("reweight", "drw"), ("ldam", "balanced_softmax", "logit_adjust")


def check_counts_for_objective(config: ml_collections.ConfigDict, counts: np.ndarray,
                               list_path: str) -> None:
  """A class without training images has no class-balanced weight, margin or prior."""
  tr, loss = config.train, config.loss
  empty = np.flatnonzero(counts == 0)
  if not empty.size or (tr.rule not in COUNT_RULES and loss.name not in COUNT_LOSSES):
    return
  uses = f"train.rule={tr.rule!r}" if tr.rule in COUNT_RULES else f"loss.name={loss.name!r}"
  raise DataError(f"{list_path} lists no training image for {empty.size} of the "
                  f"{len(counts)} classes (e.g. {', '.join(map(str, empty[:5]))}), but {uses} "
                  "needs every class's count; use the complete training list, or "
                  "train.rule='none' with loss.name='ce' or 'focal'.")


def train_transform(config: ml_collections.ConfigDict):
  """augment.name on the host: crop_flip is the reference's ImageNet transform
  (RandomResizedCrop + flip, + colour jitter for ImageNet-LT); none is the evaluation view."""
  ds = config.dataset
  if config.augment.name == "none":
    return image_pipeline.CenterView(size=ds.image_size, resize=ds.resize_size)
  return image_pipeline.Augment(
      size=ds.image_size, color_jitter=datasets.get(ds.name).color_jitter)


def train_feed(config: ml_collections.ConfigDict, images: ImageList, batch_sharding,
               transform=None) -> feed_lib.HostFeed:
  """The training stream: this host's rows of every global batch, from any step on, in
  train.sampler's order with train.batch_size and train.num_epochs; `transform` (default
  `train_transform(config)`) makes each example's images (its `fields`)."""
  ds, tr = config.dataset, config.train
  transform = transform or train_transform(config)

  def batches_from(step: int):
    return image_pipeline.train_batches(
        images, batch_size=tr.batch_size, num_epochs=tr.num_epochs, seed=config.seed,
        order=tr.sampler, samples_per_class=tr.samples_per_class, augment=transform,
        num_workers=ds.num_workers, process_index=jax.process_index(),
        process_count=jax.process_count(), start_step=step)

  size, batch = ds.image_size, tr.batch_size
  spec = {name: jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8,
                                     sharding=batch_sharding) for name in transform.fields}
  spec["label"] = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=batch_sharding)
  stream = {"list": images.list_path, "list_sha256": io_utils.sha256_file(images.list_path),
            "images": len(images), "seed": config.seed, "order": tr.sampler,
            "samples_per_class": tr.samples_per_class, "batch_size": batch,
            "transform": repr(transform)}
  return feed_lib.HostFeed(batches_from, batch_sharding, spec=spec, stream=stream)


def evaluation_splits(splits: dict[str, ImageList | None]) -> dict[str, ImageList]:
  """The splits every evaluation reports: test, and val where the dataset has one."""
  return {name: splits[name] for name in ("test", "val") if splits[name] is not None}


def eval_stream(config: ml_collections.ConfigDict, mesh):
  """images -> this host's rows of the split's padded, masked batches of centre views
  (dataset.resize_size, then dataset.image_size), train.eval_batch_size per global batch
  rounded up to a multiple of the mesh's devices."""
  ds = config.dataset
  return functools.partial(
      image_pipeline.eval_batches,
      batch_size=parallel.padded_batch_size(config.train.eval_batch_size, mesh),
      resize=ds.resize_size, crop=ds.image_size, num_workers=ds.num_workers,
      process_index=jax.process_index(), process_count=jax.process_count())


def fed_split(config: ml_collections.ConfigDict, images: ImageList, mesh) -> predict.HostBatches:
  """A list split as the predictor reads it: this host's rows of the padded, masked batches
  of centre views."""
  stream = eval_stream(config, mesh)
  return predict.HostBatches(lambda: stream(images), num_examples=len(images))


def split_outputs(config: ml_collections.ConfigDict, frozen: predict.FrozenModel,
                  splits: dict[str, ImageList | None]) -> dict[str, tuple[np.ndarray, ...]]:
  """{split: (logits, features)} of a frozen classifier on each evaluation split, in list
  order: what the post-hoc classifiers re-score, one pass over each split."""
  spec = datasets.get(config.dataset.name)
  mesh = parallel.make_mesh()
  predictor = predict.Predictor.of(frozen, spec.mean, spec.std, mesh=mesh,
                                   batch_size=config.train.eval_batch_size)
  return {name: predictor.outputs(frozen.variables, fed_split(config, images, mesh))
          for name, images in evaluation_splits(splits).items()}


class ListEvaluator:
  """state -> {split: summary} over each split's host-fed batches, counted on the device and
  read once per split. The summaries leave out the confusion matrix, kept for
  `write_confusion`."""

  def __init__(self, config, splits: dict[str, ImageList | None], model, mesh, train_counts):
    spec = datasets.get(config.dataset.name)
    self._predictor = predict.Predictor(model, spec.mean, spec.std, spec.num_classes,
                                        batch_size=config.train.eval_batch_size, mesh=mesh)
    self._splits = {name: fed_split(config, images, mesh)
                    for name, images in evaluation_splits(splits).items()}
    self._train_counts = train_counts
    self.confusion: dict[str, np.ndarray] = {}

  def __call__(self, state) -> dict[str, dict]:
    out = {}
    for name, split in self._splits.items():
      counts = self._predictor.counts(predict.variables_of(state), split)
      out[name] = lt_metrics.summarize(counts["confusion"], counts["top5_correct"],
                                       self._train_counts, with_confusion=False)
      self.confusion[name] = np.asarray(counts["confusion"], np.int32)
    return out

  def write_confusion(self, path: str) -> None:
    """The last evaluation's confusion matrices ([true, predicted] counts per split)."""
    io_utils.atomic_write(path, lambda tmp: np.savez_compressed(tmp, **self.confusion))
