"""A model's eval-mode forward pass over a whole split, written once: every evaluation during
training, pseudo-labeling, the decoupled classifiers' re-scoring and a grid's evaluation run
through `Predictor`.

A split is one of three kinds, by where its images are:

  DeviceSplit   uint8 images and labels already on the device, padded to whole batches: a
                training run's test and validation sets, counted in one jitted call
  HostImages    a uint8 [N, H, W, C] array or an ImageSource on the host (a pool, a split
                read from an npz), padded and sent one batch at a time
  HostBatches   a stream of this host's rows of padded batches {'image', 'label', 'mask'}
                (the decoded centre views of a list dataset)

Every batch has `Predictor.batch_size` rows, the requested size rounded up to a multiple of
the devices; padding rows carry mask False. So every image counts exactly once, in order, on
any number of devices.

  predictor = Predictor(model, mean, std, num_classes, batch_size=1024)
  predictor.counts(variables, split)    # confusion [C, C] and top-5 hits [C], summed on device
  predictor.outputs(variables, split)   # logits [N, C], features [N, D], labels [N]
  predictor.labels(variables, split)    # (argmax [N], max softmax probability [N])
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import checkpoint, models, parallel
from lt_jax import metrics as lt_metrics
from lt_jax import workdir as workdir_lib
from lt_jax.data import augment as augment_lib
from lt_jax.data import image_source
from lt_jax.errors import ConfigError, DataError
from lt_jax.train import feed as feed_lib
from lt_jax.train import writers

# --- splits ---------------------------------------------------------------------------------


@flax.struct.dataclass
class DeviceSplit:
  """A split on the device: `images` uint8 [K * batch_size, H, W, C] and `labels` int32, of
  which the first `num_examples` rows are real. A pytree, so a jitted function (or a grid's
  models, mapped over) takes it as an argument."""
  images: jax.Array
  labels: jax.Array
  num_examples: int = flax.struct.field(pytree_node=False)
  batch_size: int = flax.struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class HostImages:
  """uint8 [N, H, W, C] images on the host (an array or an ImageSource, read a batch at a
  time), with their labels where known."""
  images: Any
  labels: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class HostBatches:
  """A split read as padded batches of this host's rows: `make()` starts a fresh pass."""
  make: Callable[[], Iterable[dict]]
  num_examples: int | None = None  # For progress lines only.


Split = DeviceSplit | HostImages | HostBatches


class Outputs(NamedTuple):
  """Per image of a split, in its order: logits float32 [N, C], features float32 [N, D] and
  the split's labels int32 [N] (zeros for images without labels)."""
  logits: np.ndarray
  features: np.ndarray
  labels: np.ndarray


def variables_of(state) -> dict:
  """The variables a forward pass needs from a train state (no optimiser state)."""
  return {"params": state.params, "batch_stats": state.batch_stats}


# --- the jitted pieces (module level, so equal static arguments share one compilation) --------


def _forward(variables, images, *, model, mean, std):
  logits, features = model.apply(variables, augment_lib.normalize(images, mean, std),
                                 train=False)
  return logits.astype(jnp.float32), features.astype(jnp.float32)


def zero_counts(num_classes: int) -> dict:
  """The evaluation sums before any batch: confusion [C, C] and top-5 hits [C]."""
  return {"confusion": jnp.zeros((num_classes, num_classes), jnp.int32),
          "top5_correct": jnp.zeros((num_classes,), jnp.int32)}


def _add_counts(variables, counts, batch, *, model, mean, std, num_classes, batch_sharding):
  images = jax.lax.with_sharding_constraint(batch["image"], batch_sharding)
  logits, _ = _forward(variables, images, model=model, mean=mean, std=std)
  new = lt_metrics.confusion_update(logits, batch["label"], num_classes, where=batch["mask"])
  return jax.tree.map(jnp.add, counts, new)


_add_counts_jit = jax.jit(_add_counts, donate_argnums=1, static_argnames=(
    "model", "mean", "std", "num_classes", "batch_sharding"))


def _split_counts(variables, split: DeviceSplit, *, model, mean, std, num_classes,
                  batch_sharding):
  size = split.batch_size

  def body(i, counts):
    start = i * size
    batch = {"image": jax.lax.dynamic_slice_in_dim(split.images, start, size),
             "label": jax.lax.dynamic_slice_in_dim(split.labels, start, size),
             "mask": (start + jnp.arange(size)) < split.num_examples}
    return _add_counts(variables, counts, batch, model=model, mean=mean, std=std,
                       num_classes=num_classes, batch_sharding=batch_sharding)

  return jax.lax.fori_loop(0, split.images.shape[0] // size, body, zero_counts(num_classes))


_split_counts_jit = jax.jit(_split_counts, static_argnames=(
    "model", "mean", "std", "num_classes", "batch_sharding"))


def _rows(variables, batch, *, model, mean, std, kinds, scale, out_sharding):
  """The requested per-row outputs of one batch, with its mask, replicated (a few values per
  row, readable on every host)."""
  logits, features = _forward(variables, batch["image"], model=model, mean=mean, std=std)
  every = {"logits": lambda: logits, "features": lambda: features,
           "pred": lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32),
           "confidence": lambda: jnp.max(jax.nn.softmax(logits * scale, axis=-1), axis=-1),
           "label": lambda: batch["label"]}
  out = {k: every[k]() for k in kinds} | {"mask": batch["mask"]}
  return jax.lax.with_sharding_constraint(out, out_sharding)


_rows_jit = jax.jit(_rows, static_argnames=(
    "model", "mean", "std", "kinds", "scale", "out_sharding"))


# --- the predictor --------------------------------------------------------------------------


class Predictor:
  """One architecture's forward pass in eval mode over whole splits, batched over `mesh`'s
  data axis; the variables are an argument of each call, so one predictor serves every epoch
  of a run. `field` names the config field that set `batch_size`, for its error."""

  def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
               num_classes: int, *, batch_size: int = 1024, mesh=None,
               field: str = "train.eval_batch_size"):
    if batch_size <= 0:
      raise ConfigError(f"{field}={batch_size} must be positive.")
    self.mesh = parallel.make_mesh() if mesh is None else mesh
    self.batch_size = parallel.padded_batch_size(batch_size, self.mesh)
    self.num_classes = int(num_classes)
    self._model = dict(model=model, mean=tuple(map(float, mean)), std=tuple(map(float, std)))
    self._replicated = parallel.replicated(self.mesh)
    self._batch_sharding = parallel.batch_sharded(self.mesh)
    self._count = dict(self._model, num_classes=self.num_classes,
                       batch_sharding=self._batch_sharding)

  @classmethod
  def of(cls, frozen: FrozenModel, mean, std, **kwargs) -> Predictor:
    return cls(frozen.model, mean, std, frozen.num_classes, **kwargs)

  def put(self, images, labels) -> DeviceSplit:
    """A split placed on the device (replicated), padded to whole batches."""
    n = len(labels)
    padded = -(-n // self.batch_size) * self.batch_size
    padded_images = np.zeros((padded, *np.shape(images)[1:]), np.uint8)
    padded_labels = np.zeros((padded,), np.int32)
    padded_images[:n], padded_labels[:n] = images, labels
    return DeviceSplit(parallel.put(padded_images, self._replicated),
                       parallel.put(padded_labels, self._replicated), n, self.batch_size)

  def split_counts(self, variables, split: DeviceSplit) -> dict:
    """Pure counts over a device split: what a grid maps over its stacked models."""
    return _split_counts(variables, split, **self._count)

  def add_counts(self, variables, counts: dict, batch: dict) -> dict:
    """Pure: `counts` plus one batch's (from `batches`); a grid maps it over its models to
    count a host split, each batch read once for them all."""
    return _add_counts(variables, counts, batch, **self._count)

  def counts(self, variables, split: Split) -> dict[str, np.ndarray]:
    """{'confusion': int32 [C, C] (true x predicted), 'top5_correct': int32 [C]}, summed on
    the device and read once."""
    variables = self._placed(variables)
    if isinstance(split, DeviceSplit):
      return jax.device_get(_split_counts_jit(variables, split, **self._count))
    counts = jax.device_put(zero_counts(self.num_classes), self._replicated)
    for batch in self.batches(split):
      counts = _add_counts_jit(variables, counts, batch, **self._count)
    return jax.device_get(counts)

  def outputs(self, variables, split: Split, *, log: Callable[[str], None] | None = None
              ) -> Outputs:
    """Logits, features and labels of every image in split order: what the post-hoc
    classifiers re-score without running the model again."""
    out = self._rows(variables, split, ("logits", "features", "label"), 1.0, log)
    return Outputs(out["logits"], out["features"], out["label"].astype(np.int32))

  def labels(self, variables, split: Split, *, scale: float = 1.0,
             log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(argmax int64 [N], max softmax probability of `scale` * logits, float32 [N])."""
    out = self._rows(variables, split, ("pred", "confidence"), float(scale), log)
    return out["pred"].astype(np.int64), out["confidence"].astype(np.float32)

  def _rows(self, variables, split: Split, kinds: tuple[str, ...], scale: float, log
            ) -> dict[str, np.ndarray]:
    variables = self._placed(variables)
    forward = functools.partial(_rows_jit, **self._model, kinds=kinds, scale=scale,
                                out_sharding=self._replicated)
    progress = _Progress(_num_examples(split), self.batch_size, log)
    chunks, in_flight, done = [], None, 0
    for batch in self.batches(split):
      out = forward(variables, batch)
      if in_flight is not None:  # Read the previous batch only once this one is dispatched.
        chunks.append(jax.device_get(in_flight))
        done += self.batch_size
        progress.done(done)
      in_flight = out
    if in_flight is not None:
      chunks.append(jax.device_get(in_flight))
    if not chunks:
      return {k: np.zeros((0, *self._row_shape(k, variables)), np.float32) for k in kinds}
    mask = np.concatenate([c["mask"] for c in chunks]).astype(bool)
    return {k: np.concatenate([c[k] for c in chunks])[mask] for k in kinds}

  def _row_shape(self, kind: str, variables) -> tuple[int, ...]:
    if kind == "logits":
      return (self.num_classes,)
    if kind == "features":
      return (int(np.shape(variables["params"]["head"]["kernel"])[0]),)
    return ()

  def _placed(self, variables):
    """Host arrays (a frozen model's) replicated on the mesh; device arrays as they are."""
    return jax.tree.map(
        lambda v: v if isinstance(v, jax.Array) else parallel.put(v, self._replicated),
        variables)

  def batches(self, split: Split) -> Iterator[dict]:
    """The split as padded, masked device batches {'image', 'label', 'mask'} of
    `batch_size` rows: a host split's sharded over the mesh's data axis, a device split's
    sliced from it."""
    if isinstance(split, HostBatches):
      yield from feed_lib.device_batches(split.make(), self._batch_sharding)
    elif isinstance(split, HostImages):
      images = _checked_images(split.images)
      for start in range(0, len(images), self.batch_size):
        yield {k: parallel.put(v, self._batch_sharding)
               for k, v in _host_batch(images, split.labels, start, self.batch_size).items()}
    elif isinstance(split, DeviceSplit):
      for start in range(0, split.images.shape[0], split.batch_size):
        stop = start + split.batch_size
        yield {"image": split.images[start:stop], "label": split.labels[start:stop],
               "mask": jnp.arange(start, stop) < split.num_examples}
    else:
      raise TypeError(f"not a split: {type(split).__name__}")


def _num_examples(split: Split) -> int | None:
  if isinstance(split, HostImages):
    return len(split.images)
  return split.num_examples


def _host_batch(images, labels, start: int, batch_size: int) -> dict[str, np.ndarray]:
  """Rows start.. of the images (and labels), zero-padded to `batch_size`, with their mask."""
  chunk = image_source.read_rows(images, start, min(start + batch_size, len(images)))
  n = len(chunk)
  out = {"image": np.zeros((batch_size, *images.shape[1:]), np.uint8),
         "label": np.zeros((batch_size,), np.int32), "mask": np.arange(batch_size) < n}
  out["image"][:n] = chunk
  if labels is not None:
    out["label"][:n] = labels[start:start + n]
  return out


def _checked_images(images):
  if not isinstance(images, image_source.ImageSource):
    images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise DataError(f"images must be uint8 [N, H, W, C], got {images.dtype} "
                    f"{list(images.shape)}; pass the raw images, before normalisation.")
  return images


class _Progress:
  """A line before the first (compiling) batch, then images done, images/s and the ETA
  about every tenth of the images; silent without `log` or a known size."""

  def __init__(self, total: int | None, batch_size: int, log: Callable[[str], None] | None):
    self.total, self.log = total, log if total else None
    self.next = (total or 0) // 10
    self.start = time.perf_counter()
    if self.log is not None:
      self.log(f"forward pass over {total:,} images, {batch_size:,} a batch (the first batch "
               "compiles) ...")

  def done(self, images: int) -> None:
    if self.log is None or images < self.next or images >= self.total:
      return
    self.next = images + self.total // 10
    rate = images / max(time.perf_counter() - self.start, 1e-9)
    self.log(f"  {images:,} / {self.total:,} images, {rate:,.0f} images/s, ETA "
             f"{writers.format_seconds((self.total - images) / rate)}")


# --- a finished run's model -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A trained model with its variables, ready for inference only (no optimiser state)."""

  model: nn.Module
  variables: dict[str, Any]  # {'params': ..., 'batch_stats': ...} as host numpy arrays.
  num_classes: int
  config: ml_collections.ConfigDict  # The run's resolved config.


def load_frozen(path: str, which: str = "last") -> FrozenModel:
  """Loads a finished run's model for inference.

  `path` is the run's workdir (its config.json and checkpoints/<which>) or one of its
  checkpoint folders, `<workdir>/checkpoints/last|best` (then `which` is not used). The newest
  step in the folder is restored, after checking it is the one the run finished with;
  optimiser state and the run's key are dropped.
  """
  if which not in workdir_lib.CHECKPOINT_KINDS:
    raise ValueError(f"which={which!r}; use one of {workdir_lib.CHECKPOINT_KINDS}.")
  workdir, ckpt_dir = _locate(path, which)
  if checkpoint.latest_step(ckpt_dir) is None:
    raise _missing(path, which)
  config = workdir_lib.read_config(workdir)
  workdir_lib.check_checkpoint(ckpt_dir)
  state, _ = checkpoint.restore_saved(ckpt_dir)
  variables = jax.tree.map(np.asarray, {"params": state["params"],
                                        "batch_stats": state.get("batch_stats", {})})
  num_classes = _num_classes(workdir, variables["params"])
  # Inference only: the frozen-backbone flags of a decoupled stage change nothing here.
  model = models.from_config(config.model, num_classes)
  return FrozenModel(model=model, variables=variables, num_classes=num_classes, config=config)


def _locate(path: str, which: str) -> tuple[str, str]:
  """(workdir, checkpoint folder) for a workdir or a `.../checkpoints/<which>` folder."""
  path = os.path.abspath(path)
  if os.path.isfile(os.path.join(path, workdir_lib.CONFIG_FILE)):
    return path, workdir_lib.checkpoint_dir(path, which)
  workdir = os.path.dirname(os.path.dirname(path))
  parent = os.path.basename(os.path.dirname(path))
  if parent == "checkpoints" and os.path.isfile(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
    return workdir, path
  raise _missing(path, which)


def _missing(path: str, which: str) -> DataError:
  return DataError(
      f"no finished base model in {path}: expected {workdir_lib.CONFIG_FILE} and "
      f"checkpoints/{which}; train the base stage first or set semi.base_workdir.")


def _num_classes(workdir: str, params: dict) -> int:
  """The head's output size; results.json, when the run finished, must agree with it."""
  n = int(np.shape(params["head"]["kernel"])[-1])
  results_path = os.path.join(workdir, workdir_lib.RESULTS_FILE)
  if os.path.isfile(results_path):
    with open(results_path) as f:
      recorded = json.load(f).get("dataset", {}).get("num_classes")
    if recorded is not None and int(recorded) != n:
      raise DataError(f"{results_path} says {recorded} classes but the checkpoint's head has "
                      f"{n}; the workdir mixes two runs: retrain the base stage in a new one.")
  return n
