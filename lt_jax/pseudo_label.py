"""Pseudo-labels for the unlabeled pool D_U from a frozen base model (the semi-supervised stage).

The paper's recipe: train a base model on the imbalanced labeled set D_L, let a frozen copy label
the pool, then train again on D_L plus the pseudo-labeled pool. This module is the middle step:

  frozen = load_frozen(base_workdir)                   # config.json + checkpoints/last
  pred, conf = predict(frozen, pool_images, mean, std)  # argmax and max softmax probability
  keep = select(pred, conf, frozen.num_classes)        # the reference keeps everything
  write_pseudo_labels(path, indices=..., pred=pred, confidence=conf, keep=keep)

`predict` is one jitted function per batch, sharded over the mesh's data axis; the host loops
over fixed-size batches (the last one zero-padded, the padding dropped), so every pool image is
labeled exactly once whatever the pool size; a lazy `image_source.ImageSource` is streamed
batch by batch, so a pool larger than memory is never held decoded. The reference keeps every
pseudo-label; `select` adds the usual confidence threshold and a per-class cap as options.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import checkpoint, io_utils, models, parallel  # noqa: E402
from lt_jax import workdir as workdir_lib  # noqa: E402
from lt_jax.data import augment as augment_lib  # noqa: E402
from lt_jax.data import image_source  # noqa: E402
from lt_jax.errors import ConfigError, DataError  # noqa: E402
from lt_jax.train import writers  # noqa: E402

REQUIRED_KEYS = ("indices", "pseudo_labels", "confidences", "keep")
# Where the pool came from, stored as 0-d strings beside the per-image arrays.
PROVENANCE_KEYS = ("pool_source", "pool_draw_on", "pool_fingerprint")


# --- the frozen base model ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A trained model with its variables, ready for inference only (no optimiser state)."""

  model: nn.Module
  variables: dict[str, Any]  # {'params': ..., 'batch_stats': ...} as host numpy arrays.
  num_classes: int
  config: ml_collections.ConfigDict  # The base run's resolved config.


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


def load_frozen(path: str, which: str = "last") -> FrozenModel:
  """Loads a base run's model for inference.

  `path` is the base run's workdir (its config.json and checkpoints/<which>) or one of its
  checkpoint folders, `<workdir>/checkpoints/last|best` (then `which` is not used). The newest
  step in the folder is restored; optimiser state and the run's key are dropped.
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


# --- labeling -------------------------------------------------------------------------------


def logit_scale(frozen: FrozenModel) -> float:
  """The factor applied to the model's output before the softmax.

  A cosine head outputs cosines in [-1, 1]; their softmax ranks examples correctly but is
  nearly flat (every confidence close to 1/C). LDAM trains such heads with logits scaled by
  s (`loss.ldam_s`, 30), so the same s makes the confidences those the model was trained to
  produce. A linear head's logits are used as they are.
  """
  if frozen.config.model.head == "cosine":
    return float(frozen.config.loss.ldam_s)
  return 1.0


def _label_batch(variables, images, *, model, mean, std, scale, out_sharding):
  """Predicted class and max softmax probability of one batch (padded rows included)."""
  logits, _ = model.apply(variables, augment_lib.normalize(images, mean, std), train=False)
  logits = logits.astype(jnp.float32)
  probs = jax.nn.softmax(logits * scale, axis=-1)
  out = (jnp.argmax(logits, axis=-1).astype(jnp.int32), jnp.max(probs, axis=-1))
  # Replicated outputs (a few bytes per image) can be read on every host.
  return jax.lax.with_sharding_constraint(out, out_sharding)


_label_batch_jit = jax.jit(
    _label_batch, static_argnames=("model", "mean", "std", "scale", "out_sharding"))


def _outputs_batch(variables, images, *, model, mean, std, out_sharding):
  logits, features = model.apply(variables, augment_lib.normalize(images, mean, std),
                                 train=False)
  out = (logits.astype(jnp.float32), features.astype(jnp.float32))
  return jax.lax.with_sharding_constraint(out, out_sharding)


_outputs_batch_jit = jax.jit(
    _outputs_batch, static_argnames=("model", "mean", "std", "out_sharding"))


def _fed_outputs_batch(variables, images, mask, *, model, mean, std, out_sharding):
  logits, features = _outputs_batch(variables, images, model=model, mean=mean, std=std,
                                    out_sharding=out_sharding)
  return logits, features, jax.lax.with_sharding_constraint(mask, out_sharding)


_fed_outputs_batch_jit = jax.jit(
    _fed_outputs_batch, static_argnames=("model", "mean", "std", "out_sharding"))


def _batch(images, start: int, batch_size: int) -> np.ndarray:
  """images[start:start + batch_size] (read from an ImageSource), zero-padded to batch_size."""
  chunk = image_source.read_rows(images, start, min(start + batch_size, len(images)))
  if len(chunk) == batch_size:
    return chunk
  padded = np.zeros((batch_size, *images.shape[1:]), images.dtype)
  padded[:len(chunk)] = chunk
  return padded


def _check_images(images):
  if not isinstance(images, image_source.ImageSource):
    images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise DataError(f"pool images must be uint8 [M, H, W, C], got {images.dtype} "
                    f"{list(images.shape)}; pass the raw pool images, before normalisation.")
  return images


def predict(frozen: FrozenModel, images_uint8, mean: Sequence[float],
            std: Sequence[float], *, batch_size: int = 1024,
            mesh=None, log: Callable[[str], None] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
  """Labels every pool image: (pred int64 [M], confidence float32 [M]).

  `images_uint8` is a uint8 [M, H, W, C] array or an ImageSource, read one batch at a time.

  confidence is the max softmax probability of `logit_scale(frozen) * logits` (see there for
  cosine heads). Batches of `batch_size` (config `semi.label_batch_size`, split over the mesh's
  data axis) run one at a time on the device while the host pads and sends the next one.
  """
  pred, confidence = map_batches(frozen, images_uint8, batch_size, mesh, functools.partial(
      _label_batch_jit, model=frozen.model, mean=tuple(map(float, mean)),
      std=tuple(map(float, std)), scale=logit_scale(frozen)), empty=((), ()),
      field="semi.label_batch_size", log=log)
  return pred.astype(np.int64), confidence.astype(np.float32)


def outputs(frozen: FrozenModel, images_uint8, mean: Sequence[float], std: Sequence[float], *,
            batch_size: int = 1024, mesh=None, log: Callable[[str], None] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
  """(logits float32 [M, classes], features float32 [M, width]) of every image: what the
  post-hoc classifiers (tau-norm, logit adjustment) re-score without running the model again."""
  width = int(np.shape(frozen.variables["params"]["head"]["kernel"])[0])
  return map_batches(frozen, images_uint8, batch_size, mesh, functools.partial(
      _outputs_batch_jit, model=frozen.model, mean=tuple(map(float, mean)),
      std=tuple(map(float, std))), empty=((frozen.num_classes,), (width,)),
      field="train.eval_batch_size", log=log)


def fed_outputs(frozen: FrozenModel, batches, mean: Sequence[float], std: Sequence[float], *,
                mesh) -> tuple[np.ndarray, np.ndarray]:
  """(logits float32 [N, classes], features float32 [N, width]) of the real rows of host-fed
  evaluation batches ({'image', 'mask', ...} sharded over `mesh`, as feed.device_batches gives
  them): one jitted forward per batch, the outputs kept on the device and read back once, so
  the host never waits on a batch; rows with mask False (the padding) are dropped."""
  replicated = parallel.replicated(mesh)
  variables = jax.tree.map(lambda v: parallel.put(v, replicated), frozen.variables)
  forward = functools.partial(_fed_outputs_batch_jit, model=frozen.model,
                              mean=tuple(map(float, mean)), std=tuple(map(float, std)),
                              out_sharding=replicated)
  parts = [forward(variables, batch["image"], batch["mask"]) for batch in batches]
  if not parts:
    width = int(np.shape(frozen.variables["params"]["head"]["kernel"])[0])
    return (np.zeros((0, frozen.num_classes), np.float32), np.zeros((0, width), np.float32))
  logits, features, mask = jax.device_get(tuple(jnp.concatenate(p) for p in zip(*parts)))
  return logits[mask], features[mask]


def map_batches(frozen: FrozenModel, images_uint8, batch_size: int, mesh, fn, empty,
                field: str, log: Callable[[str], None] | None = None):
  """Runs `fn(variables, images, out_sharding=...) -> (array [B, ...], ...)` over every image
  in padded batches and returns the outputs as host arrays of M rows (`empty`: their shapes
  after the first axis, for M = 0). `field` is the config field that set `batch_size`. With
  `log`, a line before the first (compiling) batch and about every tenth of the images."""
  images = _check_images(images_uint8)
  mesh = parallel.make_mesh() if mesh is None else mesh
  if batch_size <= 0:
    raise ConfigError(f"{field}={batch_size} must be positive.")
  batch_size = parallel.padded_batch_size(batch_size, mesh)
  m = len(images)
  if m == 0:
    return tuple(np.zeros((0, *shape), np.float32) for shape in empty)
  replicated = parallel.replicated(mesh)
  variables = jax.tree.map(lambda v: parallel.put(v, replicated), frozen.variables)
  chunks = []
  sharding = parallel.batch_sharded(mesh)
  in_flight = None
  progress = _Progress(m, batch_size, log)
  for start in range(0, m, batch_size):
    out = fn(variables, parallel.put(_batch(images, start, batch_size), sharding),
             out_sharding=replicated)
    if in_flight is not None:  # Read the previous batch only once this one is dispatched.
      chunks.append(tuple(np.asarray(o) for o in in_flight))
      progress.done(start)
    in_flight = out
  chunks.append(tuple(np.asarray(o) for o in in_flight))
  return tuple(np.concatenate(parts)[:m] for parts in zip(*chunks))


class _Progress:
  """map_batches' lines: what runs before the first batch compiles, then images done,
  images/s and the ETA about every tenth of the images."""

  def __init__(self, total: int, batch_size: int, log: Callable[[str], None] | None):
    self.total, self.log, self.next = total, log, total // 10
    self.start = time.perf_counter()
    if log is not None:
      log(f"forward pass over {total:,} images, {batch_size:,} a batch (the first batch "
          "compiles) ...")

  def done(self, images: int) -> None:
    if self.log is None or images < self.next or images >= self.total:
      return
    self.next = images + self.total // 10
    rate = images / max(time.perf_counter() - self.start, 1e-9)
    self.log(f"  {images:,} / {self.total:,} images, {rate:,.0f} images/s, ETA "
             f"{writers.format_seconds((self.total - images) / rate)}")


# --- selection ------------------------------------------------------------------------------


def _cap_per_class(pred: np.ndarray, confidence: np.ndarray, candidates: np.ndarray,
                   k: int) -> np.ndarray:
  """Indices (from candidates) of the k most confident per predicted class; ties by index."""
  order = candidates[np.lexsort((candidates, -confidence[candidates], pred[candidates]))]
  classes = pred[order]
  rank = np.arange(len(order)) - np.searchsorted(classes, classes, side="left")
  return order[rank < k]


def select(pred: np.ndarray, confidence: np.ndarray, num_classes: int, *,
           threshold: float | None = None, per_class_max: int | None = None) -> np.ndarray:
  """Keep mask over the pool: all True when both options are None (the reference).

  threshold keeps confidence >= threshold; per_class_max then keeps, among those, at most k
  per predicted class, the most confident first (equal confidences: lower index first), so a
  head class cannot flood the pseudo-labeled set.
  """
  pred, confidence = np.asarray(pred), np.asarray(confidence)
  if pred.shape != confidence.shape or pred.ndim != 1:
    raise ValueError(f"pred {pred.shape} and confidence {confidence.shape} must be equal 1-D.")
  if len(pred) and (pred.min() < 0 or pred.max() >= num_classes):
    raise ValueError(f"pred holds classes outside [0, {num_classes}).")
  keep = np.ones(pred.shape, bool)
  if threshold is not None:
    if not 0.0 <= threshold <= 1.0:
      raise ConfigError(f"semi.confidence_threshold={threshold} must lie in [0, 1] (or be None).")
    keep &= confidence >= threshold
  if per_class_max is not None:
    if int(per_class_max) != per_class_max or per_class_max < 0:
      raise ConfigError(f"semi.per_class_max={per_class_max} must be a non-negative integer.")
    capped = np.zeros_like(keep)
    capped[_cap_per_class(pred, confidence, np.flatnonzero(keep), int(per_class_max))] = True
    keep &= capped
  return keep


# --- files ----------------------------------------------------------------------------------


def write_pseudo_labels(path: str, *, indices, pred, confidence, keep, true_labels=None,
                        provenance: dict[str, str] | None = None,
                        overwrite: bool = False) -> str:
  """Writes the .npz atomically; refuses to replace an existing file unless overwrite=True.

  `provenance` (keys of PROVENANCE_KEYS) is stored as 0-d strings so that a later stage can
  check the file was made for its pool.
  """
  arrays = {"indices": np.asarray(indices, np.int64),
            "pseudo_labels": np.asarray(pred, np.int64),
            "confidences": np.asarray(confidence, np.float32),
            "keep": np.asarray(keep, bool)}
  if true_labels is not None:
    arrays["true_labels"] = np.asarray(true_labels, np.int64)
  lengths = {k: v.shape for k, v in arrays.items()}
  if len(set(lengths.values())) != 1 or arrays["indices"].ndim != 1:
    raise ValueError(f"pseudo-label arrays must be 1-D of one length, got {lengths}.")
  unknown = sorted(set(provenance or {}) - set(PROVENANCE_KEYS))
  if unknown:
    raise ValueError(f"unknown provenance keys {unknown}; use {PROVENANCE_KEYS}.")
  arrays.update({k: np.asarray(str(v)) for k, v in (provenance or {}).items()})
  # Process 0 alone writes; another process would find its file here when it is done first.
  if parallel.is_main_process() and os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or "
                          "write to another path.")

  def write(tmp: str) -> None:
    with open(tmp, "wb") as f:  # A file object: np.savez would add .npz to a bare name.
      np.savez(f, **arrays)

  io_utils.atomic_write(path, write)
  return path


def read_pseudo_labels(path: str, num_classes: int | None = None) -> dict[str, np.ndarray]:
  """The arrays written by write_pseudo_labels, checked for the required keys and, given
  `num_classes`, every pseudo-label (and true label) for the range 0..num_classes-1: a file
  changed by hand or made for another dataset must not train a model of other classes."""
  if not os.path.isfile(path):
    raise DataError(f"no pseudo-label file at {path}; run the pseudo-label stage first.")
  try:
    with np.load(path, allow_pickle=False) as f:
      out = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise DataError(f"{path} is not a readable .npz ({e}); delete it and rerun the "
                    "pseudo-label stage.") from e
  for key in REQUIRED_KEYS:
    if key not in out:
      raise DataError(f"{path} lacks the array {key!r}; it was not written by "
                      "write_pseudo_labels: delete it and rerun the pseudo-label stage.")
  lengths = {k: v.shape for k, v in out.items() if k not in PROVENANCE_KEYS}
  if len(set(lengths.values())) != 1:
    raise DataError(f"{path} holds arrays of different lengths {lengths}; rerun the "
                    "pseudo-label stage.")
  if num_classes is not None:
    for key in ("pseudo_labels", "true_labels"):
      if key in out:
        _check_label_range(path, key, out[key], num_classes)
  _check_unchanged(path)
  return out


def _rebuilt_by_deleting(path: str) -> str:
  """The end of every message about a damaged pseudo-label file: its stage folder (the file
  and its report.json) gone, the same command writes both again."""
  return (f"{os.path.dirname(os.path.abspath(path))} and run the same command again: the "
          "pseudo-label stage rebuilds it.")


def _check_label_range(path: str, key: str, labels: np.ndarray, num_classes: int) -> None:
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{path}: {key!r} is {labels.dtype}, not integer class ids; delete "
                    + _rebuilt_by_deleting(path))
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DataError(f"{path}: {key!r} holds {bad.size} labels outside 0..{num_classes - 1} (row "
                    f"{bad[0]}: {labels[bad[0]]}); the file was changed or made for another "
                    "dataset. Delete " + _rebuilt_by_deleting(path))


def _check_unchanged(path: str) -> None:
  """A file that its stage's report.json describes must still have the checksum recorded
  there: labels edited in range (all shifted by one, say) pass every other check. The stage
  itself reads its file before it writes the report, so there is nothing to compare yet."""
  report_path = os.path.join(os.path.dirname(path), workdir_lib.PSEUDO_LABEL_REPORT_FILE)
  if not os.path.isfile(report_path):
    return  # Not yet reported, or a file of the user's own.
  with open(report_path) as f:
    recorded = json.load(f).get("sha256")
  if recorded is not None and recorded != io_utils.sha256_file(path):
    raise DataError(f"{path} changed after the pseudo-label stage wrote it (its SHA-256 is not "
                    f"the one in {report_path}); delete " + _rebuilt_by_deleting(path))


# --- report ---------------------------------------------------------------------------------


def _percent(num: np.ndarray, den: np.ndarray) -> list[float | None]:
  return [None if d == 0 else 100.0 * float(n) / float(d) for n, d in zip(num, den)]


def report(pred, keep, true_labels, num_classes: int) -> dict:
  """JSON-ready summary of the pseudo-labels (accuracy terms only when true labels are known).

  distribution counts kept examples per predicted class; per_class_accuracy is per true class
  (the recall of the kept pseudo-labels), per_class_precision per predicted class, both in
  percent and None for a class with no kept example; confusion is true x predicted over kept.
  """
  pred, keep = np.asarray(pred, np.int64), np.asarray(keep, bool)
  out = {"num_pool": int(len(pred)), "num_kept": int(keep.sum()),
         "distribution": np.bincount(pred[keep], minlength=num_classes).tolist()}
  if true_labels is None:
    return out
  true = np.asarray(true_labels, np.int64)
  if true.shape != pred.shape or keep.shape != pred.shape:
    raise ValueError(f"pred {pred.shape}, keep {keep.shape} and true_labels {true.shape} "
                     "must have one shape.")
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (true[keep], pred[keep]), 1)
  correct = np.diag(confusion)
  out.update(
      accuracy=None if not keep.any() else 100.0 * float(correct.sum()) / float(keep.sum()),
      per_class_accuracy=_percent(correct, confusion.sum(axis=1)),
      per_class_precision=_percent(correct, confusion.sum(axis=0)),
      confusion=confusion.tolist(),
      true_distribution=np.bincount(true, minlength=num_classes).tolist())
  return out


def plot_report(path: str, report: dict, class_counts=None) -> None:
  """Two panels: kept pseudo-labels per class against the pool's true counts (class_counts,
  else the report's true_distribution), and per-class pseudo-label accuracy and precision."""
  dist = np.asarray(report["distribution"], np.float64)
  true_counts = class_counts if class_counts is not None else report.get("true_distribution")
  classes = np.arange(len(dist))
  fig, (ax_dist, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
  try:
    _plot_distribution(ax_dist, classes, dist, true_counts)
    _plot_accuracy(ax_acc, classes, report)
    fig.tight_layout()
    io_utils.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
  finally:
    plt.close(fig)


def _plot_distribution(ax, classes, dist, true_counts) -> None:
  width = 0.4 if true_counts is not None else 0.8
  offset = width / 2 if true_counts is not None else 0.0
  ax.bar(classes - offset, dist, width, label="pseudo-labels (kept)")
  counts = [dist]
  if true_counts is not None:
    true_counts = np.asarray(true_counts, np.float64)
    ax.bar(classes + offset, true_counts, width, label="pool, true labels")
    counts.append(true_counts)
  positive = np.concatenate(counts)
  positive = positive[positive > 0]
  if len(positive) and positive.max() / positive.min() > 20:
    ax.set_yscale("log")
  ax.set_xlabel("class")
  ax.set_ylabel("images")
  ax.set_title("Pseudo-label class distribution")
  ax.set_xticks(_ticks(classes))
  ax.grid(alpha=0.3, axis="y")
  ax.legend()


def _ticks(classes: np.ndarray) -> np.ndarray:
  return classes if len(classes) <= 20 else classes[::len(classes) // 20]


def _plot_accuracy(ax, classes, report: dict) -> None:
  if "per_class_accuracy" not in report:
    ax.text(0.5, 0.5, "true labels of the pool unknown", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()
    return
  nan = lambda values: np.asarray([np.nan if v is None else v for v in values], np.float64)
  ax.bar(classes, nan(report["per_class_accuracy"]), 0.8, label="accuracy (per true class)")
  ax.plot(classes, nan(report["per_class_precision"]), "k^", markersize=5,
          label="precision (per predicted class)")
  accuracy = report.get("accuracy")
  title = "Per-class pseudo-label accuracy"
  ax.set_title(title if accuracy is None else f"{title} (overall {accuracy:.2f}%)")
  ax.set_xlabel("class")
  ax.set_ylabel("%")
  ax.set_ylim(0, 125)  # Headroom for the legend above the bars.
  ax.set_yticks(range(0, 101, 20))
  ax.set_xticks(_ticks(classes))
  ax.grid(alpha=0.3, axis="y")
  ax.legend(loc="upper center", ncol=2, fontsize="small")
