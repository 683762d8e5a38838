"""Pseudo-labels for the unlabeled pool D_U from a frozen base model (the semi-supervised stage).

The paper's recipe: train a base model on the imbalanced labeled set D_L, let a frozen copy label
the pool, then train again on D_L plus the pseudo-labeled pool. This module is the middle step:

  frozen = predict_lib.load_frozen(base_workdir)        # config.json + checkpoints/last
  pred, conf = predict(frozen, pool_images, mean, std)  # argmax and max softmax probability
  keep = select(pred, conf, frozen.num_classes)        # the reference keeps everything
  semi.write_pseudo_labels(path, indices=..., pred=pred, confidence=conf, keep=keep)

`pseudo_label_pool` does these for a config's pool (drawing it on the predictions where the
config asks), `check_base` refuses a reused base model of another labeled set, and `report`
summarises the labels.

`predict` runs `predict_lib.Predictor` over the pool: fixed-size batches (the last one
zero-padded, the padding dropped) sharded over the mesh's data axis, so every pool image is
labeled exactly once whatever the pool size; a lazy `image_source.ImageSource` is streamed
batch by batch, so a pool larger than memory is never held decoded. The reference keeps every
pseudo-label; `select` adds the usual confidence threshold and a per-class cap as options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import inputs, io_utils, semi  # noqa: E402
from lt_jax import predict as predict_lib  # noqa: E402
from lt_jax import workdir as workdir_lib  # noqa: E402
from lt_jax.config import get_base_config, override  # noqa: E402
from lt_jax.data import unlabeled  # noqa: E402
from lt_jax.data.image_lists import ImageList  # noqa: E402
from lt_jax.errors import ConfigError  # noqa: E402

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


def predict(frozen: predict_lib.FrozenModel, images, mean: Sequence[float],
            std: Sequence[float], *, batch_size: int = 1024, mesh=None,
            log: Callable[[str], None] | None = None,
            config: ml_collections.ConfigDict | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Labels every pool image: (pred int64 [M], confidence float32 [M]).

  `images` is a uint8 [M, H, W, C] array or an ImageSource, read one batch at a time, or the
  ImageList of a host-fed dataset's pool, decoded on the host to the centre view of `config`'s
  dataset.* sizes. confidence is the max softmax probability of `logit_scale(frozen) * logits`
  (see there for cosine heads). Batches of `batch_size` (config `semi.label_batch_size`, split
  over the mesh's data axis) run one at a time on the device while the host prepares the next.
  """
  predictor = predict_lib.Predictor.of(frozen, mean, std, batch_size=batch_size, mesh=mesh,
                                       field="semi.label_batch_size")
  if isinstance(images, ImageList):
    split = inputs.fed_split(override(config, **{"train.eval_batch_size": batch_size}), images,
                             predictor.mesh)
  else:
    split = predict_lib.HostImages(images)
  return predictor.labels(frozen.variables, split, scale=logit_scale(frozen), log=log)


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


# --- the pool and the base model ----------------------------------------------------


def pseudo_label_pool(config: ml_collections.ConfigDict, base_dir: str,
                      pool: unlabeled.Pool | unlabeled.PoolRequest,
                      labeled: inputs.Input, path: str) -> None:
  """Labels `pool` with the frozen base model in `base_dir` and writes the .npz at `path`;
  `labeled` is the labeled set the base model trained on (its normalisation and classes).

  A PoolRequest is drawn here: every candidate is labeled (streamed in batches), the rho_U
  counts are drawn per predicted class, and only the drawn images are recorded. A predicted
  class too rare for its count stops the run here, before the final stage trains.
  """
  options = config.semi
  frozen = predict_lib.load_frozen(base_dir, which=options.base_checkpoint)
  label = lambda images: predict(
      frozen, images, labeled.mean, labeled.std, batch_size=options.label_batch_size,
      log=lambda line: print(line, flush=True), config=config)
  if isinstance(pool, unlabeled.PoolRequest):
    candidates = pool.candidates
    print(f"labeling all {len(candidates.images)} candidates of {options.pool_source} to draw "
          "the pool on their predicted classes", flush=True)
    pred, confidence = label(candidates.images)
    try:
      picked = unlabeled.draw_by_predictions(
          pool, pred, take_available=options.short_class_policy == "take_available")
    except ConfigError as e:
      raise ConfigError(f"{e} The base model is trained: in a new workdir, "
                        f"--config.semi.base_workdir={base_dir} skips its training.") from e
    indices, pred, confidence = candidates.source_indices[picked], pred[picked], confidence[picked]
    true_labels = None if candidates.labels is None else candidates.labels[picked]
    draw_on, fingerprint = "predictions", semi.fingerprint(candidates.images)
  else:
    pred, confidence = label(pool.images)
    indices, true_labels = pool.source_indices, pool.true_labels
    draw_on, fingerprint = "labels", semi.fingerprint(pool.images)
  keep = select(pred, confidence, labeled.num_classes,
                             threshold=options.confidence_threshold,
                             per_class_max=options.per_class_max)
  semi.write_pseudo_labels(
      path, indices=indices, pred=pred, confidence=confidence, keep=keep,
      true_labels=true_labels,
      provenance={"pool_source": options.pool_source, "pool_draw_on": draw_on,
                  "pool_fingerprint": fingerprint})


def shortfall(request: unlabeled.PoolRequest, drawn_classes: np.ndarray) -> list[int]:
  """Per class id, how many images fewer than asked a draw on predictions holds."""
  asked = np.asarray(request.requested_counts)
  got = np.bincount(np.asarray(drawn_classes, np.int64), minlength=len(asked))[:len(asked)]
  return np.maximum(asked - got, 0).tolist()


# The fields that decide which images and labels a run's labeled set D_L holds.
LABELED_SET_FIELDS = ("name", "source", "npz_path", "imb_type", "imbalance_ratio", "img_max",
                      "lt_seed", "val_per_class", "test_fraction", "image_size")


def check_base(config: ml_collections.ConfigDict, base_dir: str, base: dict,
               labeled: inputs.Input) -> None:
  """A base model given by semi.base_workdir must have trained on this run's labeled set: its
  pseudo-labels and its "base" row would otherwise belong to another one."""
  theirs = workdir_lib.read_config(base_dir).get("dataset", {})
  # A field the base's version did not have yet (absent there) held its default then.
  defaults = get_base_config().dataset
  differ = [f"dataset.{k} ({theirs.get(k, defaults[k])!r} there, {config.dataset[k]!r} here)"
            for k in LABELED_SET_FIELDS if theirs.get(k, defaults[k]) != config.dataset[k]]
  counts = base.get("class_counts")
  ours = list(labeled.facts.class_counts)
  if not differ and counts is not None and list(counts) != ours:
    differ = [f"its class counts ({counts} there, {ours} here)"]
  if differ:
    raise ConfigError(f"semi.base_workdir={base_dir!r} trained on another labeled set: "
                      f"{'; '.join(differ)}. Leave semi.base_workdir empty to train the base "
                      "here, or point it at a base trained with these dataset.* fields.")


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
