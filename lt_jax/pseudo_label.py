"""Pseudo-labels for the unlabeled pool D_U from a frozen base model (the semi-supervised stage).

The paper's recipe: train a base model on the imbalanced labeled set D_L, let a frozen copy label
the pool, then train again on D_L plus the pseudo-labeled pool. This module is the middle step:

  frozen = predict_lib.load_frozen(base_workdir)        # config.json + checkpoints/last
  pred, conf = predict(frozen, pool_images, mean, std)  # argmax and max softmax probability
  keep = select(pred, conf, frozen.num_classes)        # the reference keeps everything
  write_pseudo_labels(path, indices=..., pred=pred, confidence=conf, keep=keep)

`predict` runs `predict_lib.Predictor` over the pool: fixed-size batches (the last one
zero-padded, the padding dropped) sharded over the mesh's data axis, so every pool image is
labeled exactly once whatever the pool size; a lazy `image_source.ImageSource` is streamed
batch by batch, so a pool larger than memory is never held decoded. The reference keeps every
pseudo-label; `select` adds the usual confidence threshold and a per-class cap as options.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import io_utils, parallel  # noqa: E402
from lt_jax import predict as predict_lib  # noqa: E402
from lt_jax import workdir as workdir_lib  # noqa: E402
from lt_jax.errors import ConfigError, DataError  # noqa: E402

REQUIRED_KEYS = ("indices", "pseudo_labels", "confidences", "keep")
# Where the pool came from, stored as 0-d strings beside the per-image arrays.
PROVENANCE_KEYS = ("pool_source", "pool_draw_on", "pool_fingerprint")


# --- labeling -------------------------------------------------------------------------------


def logit_scale(frozen: predict_lib.FrozenModel) -> float:
  """The factor applied to the model's output before the softmax.

  A cosine head outputs cosines in [-1, 1]; their softmax ranks examples correctly but is
  nearly flat (every confidence close to 1/C). LDAM trains such heads with logits scaled by
  s (`loss.ldam_s`, 30), so the same s makes the confidences those the model was trained to
  produce. A linear head's logits are used as they are.
  """
  if frozen.config.model.head == "cosine":
    return float(frozen.config.loss.ldam_s)
  return 1.0


def predict(frozen: predict_lib.FrozenModel, images_uint8, mean: Sequence[float],
            std: Sequence[float], *, batch_size: int = 1024, mesh=None,
            log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Labels every pool image: (pred int64 [M], confidence float32 [M]).

  `images_uint8` is a uint8 [M, H, W, C] array or an ImageSource, read one batch at a time.
  confidence is the max softmax probability of `logit_scale(frozen) * logits` (see there for
  cosine heads). Batches of `batch_size` (config `semi.label_batch_size`, split over the mesh's
  data axis) run one at a time on the device while the host pads and sends the next one.
  """
  predictor = predict_lib.Predictor.of(frozen, mean, std, batch_size=batch_size, mesh=mesh,
                                       field="semi.label_batch_size")
  return predictor.labels(frozen.variables, predict_lib.HostImages(images_uint8),
                          scale=logit_scale(frozen), log=log)


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
