"""Evaluation metrics for long-tailed classification: sums on the device, ratios on the host.

The jitted eval step calls :func:`confusion_update` on each (padded, masked) batch and returns
integer counts; the host adds them up over the test set and calls :func:`summarize` once, which
derives top-1 / top-5 accuracy, per-class and balanced accuracy and the Many / Medium / Few-shot
accuracies (Liu et al., OLTR, CVPR 2019; Kang et al., ICLR 2020). Accuracies and errors are in
percent, like the reference code. :func:`format_table` renders summaries as Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["confusion_update", "format_table", "per_class_hits", "split_confusion", "summarize",
           "summarize_hits"]


def confusion_update(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, num_classes: int,
                     where: jax.typing.ArrayLike | None = None) -> dict[str, jax.Array]:
  """Per-batch confusion counts and per-class top-5 hits (jit-able; sum the results over batches).

  ``confusion[t, p]`` counts the masked-in examples of true class ``t`` whose argmax prediction is
  ``p`` (ties go to the lowest class id). ``top5_correct[t]`` counts the masked-in examples of
  true class ``t`` whose label is among the ``k = min(5, C)`` largest logits (``jax.lax.top_k``;
  ties go to the lower class id). Both are built from one-hot sums, so repeated labels in a batch
  need no scatter. Examples with ``where`` False, and labels outside ``[0, C)``, count nowhere.

  Args:
    logits: ``[B, C]`` scores.
    labels: ``[B]`` integer class ids.
    num_classes: ``C`` (must equal ``logits.shape[-1]``).
    where: ``[B]`` boolean mask of real (non-padding) examples; None means all.

  Returns:
    ``{'confusion': int32 [C, C], 'top5_correct': int32 [C]}``.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or logits.shape[-1] != num_classes:
    raise ValueError(f"logits shape {logits.shape} must be [B, num_classes={num_classes}].")
  if labels.shape != logits.shape[:1]:
    raise ValueError(f"labels shape {labels.shape} must be ({logits.shape[0]},).")
  mask = jnp.ones(labels.shape, bool) if where is None else jnp.asarray(where).astype(bool)
  if mask.shape != labels.shape:
    raise ValueError(f"where shape {mask.shape} must be ({logits.shape[0]},).")
  classes = jnp.arange(num_classes)
  true_onehot = (labels[:, None] == classes) & mask[:, None]  # [B, C]
  pred_onehot = jnp.argmax(logits, axis=-1)[:, None] == classes  # [B, C]
  # 0/1 operands and float32 accumulation at HIGHEST precision: exact counts up to 2**24 per cell.
  confusion = jnp.matmul(true_onehot.T.astype(jnp.float32), pred_onehot.astype(jnp.float32),
                         precision=jax.lax.Precision.HIGHEST)
  top5_correct = jnp.sum(true_onehot & _in_top5(logits, labels)[:, None], axis=0,
                         dtype=jnp.int32)
  return {"confusion": jnp.round(confusion).astype(jnp.int32), "top5_correct": top5_correct}


def _in_top5(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B] whether each label is among its row's k = min(5, C) largest logits (ties: lower id)."""
  _, top_idx = jax.lax.top_k(logits, min(5, logits.shape[-1]))  # [B, k]
  return jnp.any(top_idx == labels[:, None], axis=-1)


def _per_class(labels: jax.Array, values: jax.Array, num_classes: int) -> jax.Array:
  return jnp.zeros(num_classes, jnp.int32).at[labels].add(values.astype(jnp.int32))


def per_class_hits(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
                   num_classes: int) -> dict[str, jax.Array]:
  """Per true class over a whole split: correct argmax predictions, images and top-5 hits
  (jit-able; what `summarize_hits` takes). Scatter-adds, O(N): scoring many classifiers on
  thousands of classes then needs no [C, C] matrix."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  correct = jnp.argmax(logits, axis=-1) == labels
  return {"correct": _per_class(labels, correct, num_classes),
          "count": _per_class(labels, jnp.ones_like(correct), num_classes),
          "top5": _per_class(labels, _in_top5(logits, labels), num_classes)}


def split_confusion(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
                    num_classes: int) -> dict[str, jax.Array]:
  """`confusion_update`'s counts for a whole split at once, by scatter-add (its one-hot
  product, right for an eval step's batch, would cost N C^2 over a split of N images)."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  pred = jnp.argmax(logits, axis=-1)
  return {"confusion": jnp.zeros((num_classes, num_classes), jnp.int32).at[labels, pred].add(1),
          "top5_correct": _per_class(labels, _in_top5(logits, labels), num_classes)}


def _mean_or_none(values: np.ndarray) -> float | None:
  return float(np.mean(values)) if values.size else None


def summarize(confusion: Any, top5_correct: Any, train_counts: Sequence[int] | np.ndarray,
              many_threshold: int = 100, few_threshold: int = 20, *,
              with_confusion: bool = True) -> dict[str, Any]:
  """Top-1/top-5, per-class, balanced and Many/Medium/Few accuracy from summed counts (host-side).

  With ``n_c`` the test images of class ``c`` and ``a_c = 100 * confusion[c, c] / n_c``:

  * ``top1_acc = 100 * trace(confusion) / N`` and ``top1_err = 100 - top1_acc``;
    ``top5_acc = 100 * sum(top5_correct) / N`` (``N`` test images in all);
  * ``per_class_acc[c] = a_c`` (None for a class with no test images);
  * ``balanced_acc``: the mean of ``a_c`` over classes with test images;
  * ``many_acc`` / ``medium_acc`` / ``few_acc``: the mean of ``a_c`` (a mean of per-class
    accuracies, not a pooled ratio, as in OLTR / Kang et al.) over the classes with test images
    whose *training* count is ``> many_threshold`` / in ``[few_threshold, many_threshold]`` /
    ``< few_threshold`` (defaults 100 and 20: 101 images is Many, 100 and 20 are Medium, 19 is
    Few). None when a group has no such class.

  Every ratio is None when its denominator is 0 (e.g. no test images at all). The result holds only
  plain Python ints, floats, None and lists, so ``json.dumps`` accepts it.

  Args:
    confusion: ``[C, C]`` counts, row = true class, column = predicted class.
    top5_correct: ``[C]`` top-5 hits per true class.
    train_counts: ``[C]`` training images per class (of the set the model was trained on).
    many_threshold: classes with more training images than this are Many-shot.
    few_threshold: classes with fewer training images than this are Few-shot.

  Returns:
    dict with ``top1_acc``, ``top1_err``, ``top5_acc``, ``balanced_acc``, ``many_acc``,
    ``medium_acc``, ``few_acc`` (percent or None), ``per_class_acc`` (list of percent or None),
    ``per_class_count`` (test images per class), ``num_examples`` and, unless
    ``with_confusion`` is False, ``confusion`` (nested list; at iNaturalist's 8,142 classes
    66 million Python ints, which a caller storing the matrix elsewhere leaves out).
  """
  confusion = np.asarray(confusion, dtype=np.int64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be square [C, C], got shape {confusion.shape}.")
  result = summarize_hits(np.diag(confusion), confusion.sum(axis=1), top5_correct, train_counts,
                          many_threshold, few_threshold)
  if with_confusion:
    result["confusion"] = confusion.tolist()
  return result


def summarize_hits(correct: Any, per_class_count: Any, top5_correct: Any,
                   train_counts: Sequence[int] | np.ndarray, many_threshold: int = 100,
                   few_threshold: int = 20) -> dict[str, Any]:
  """`summarize` from what it reads off the confusion matrix: the correct predictions
  (its diagonal) and the test images (its row sums) of each class, with the top-5 hits. Scoring
  many classifiers on thousands of classes (a tau sweep) then needs no [C, C] matrix. Returns
  `summarize`'s keys but `confusion`."""
  correct = np.asarray(correct, dtype=np.int64)
  per_class_count = np.asarray(per_class_count, dtype=np.int64)
  top5_correct = np.asarray(top5_correct, dtype=np.int64)
  train_counts = np.asarray(train_counts)
  num_classes = correct.shape[0]
  for name, values in (("per_class_count", per_class_count), ("top5_correct", top5_correct),
                       ("train_counts", train_counts)):
    if values.shape != (num_classes,):
      raise ValueError(f"{name} shape {values.shape} must be ({num_classes},).")
  if few_threshold > many_threshold:
    raise ValueError(f"few_threshold ({few_threshold}) must not exceed many_threshold "
                     f"({many_threshold}).")
  total = int(per_class_count.sum())
  has_test = per_class_count > 0
  acc = np.where(has_test, 100.0 * correct / np.maximum(per_class_count, 1), np.nan)

  top1_acc = 100.0 * float(correct.sum()) / total if total else None
  groups = {
      "many_acc": train_counts > many_threshold,
      "medium_acc": (train_counts >= few_threshold) & (train_counts <= many_threshold),
      "few_acc": train_counts < few_threshold,
  }
  result: dict[str, Any] = {
      "top1_acc": top1_acc,
      "top1_err": None if top1_acc is None else 100.0 - top1_acc,
      "top5_acc": 100.0 * float(top5_correct.sum()) / total if total else None,
      "balanced_acc": _mean_or_none(acc[has_test]),
  }
  for name, in_group in groups.items():
    result[name] = _mean_or_none(acc[in_group & has_test])
  result["per_class_acc"] = [float(a) if ok else None for a, ok in zip(acc, has_test, strict=True)]
  result["per_class_count"] = [int(n) for n in per_class_count]
  result["num_examples"] = total
  return result


_TABLE_COLUMNS = (
    ("top-1 err", "top1_err"),
    ("top-1 acc", "top1_acc"),
    ("top-5 acc", "top5_acc"),
    ("balanced acc", "balanced_acc"),
    ("many", "many_acc"),
    ("medium", "medium_acc"),
    ("few", "few_acc"),
)


def _cell(value: Any) -> str:
  return "-" if value is None else f"{float(value):.2f}"


def format_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
  """Renders summaries (from :func:`summarize`) as a Markdown table, one row per name.

  Columns: name | top-1 err | top-1 acc | top-5 acc | balanced acc | many | medium | few; numbers
  with 2 decimals, a missing or None value as ``-``.

  Args:
    rows: ``{name: summary}``, e.g. ``{'final': ..., 'best': ...}``, in display order.

  Returns:
    the table, lines joined by newlines (no trailing newline).
  """
  header = "| name | " + " | ".join(title for title, _ in _TABLE_COLUMNS) + " |"
  rule = "|" + "---|" * (len(_TABLE_COLUMNS) + 1)
  lines = [header, rule]
  for name, summary in rows.items():
    cells = [_cell(summary.get(key)) for _, key in _TABLE_COLUMNS]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
