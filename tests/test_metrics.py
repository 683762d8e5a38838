"""Tests for lt_jax.metrics: hand-built confusion matrices, groups at the thresholds, masking."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lt_jax import metrics


def logits_predicting(preds, num_classes):
  """Logits whose argmax is `preds`; the other classes ranked by decreasing class id."""
  base = np.tile(np.arange(num_classes, dtype=np.float32)[::-1] * 0.01, (len(preds), 1))
  base[np.arange(len(preds)), preds] = 10.0
  return jnp.asarray(base)


# 5 classes; class 4 has no test image.
#   class 0: predicted 0, 0, 0, 1 -> 75 %
#   class 1: predicted 1, 2       -> 50 %
#   class 2: predicted 2          -> 100 %
#   class 3: predicted 0, 3, 3    -> 66.67 %
LABELS = [0, 0, 0, 0, 1, 1, 2, 3, 3, 3]
PREDS = [0, 0, 0, 1, 1, 2, 2, 0, 3, 3]
EXPECTED_CONFUSION = [
    [3, 1, 0, 0, 0],
    [0, 1, 1, 0, 0],
    [0, 0, 1, 0, 0],
    [1, 0, 0, 2, 0],
    [0, 0, 0, 0, 0],
]
# Thresholds exactly: 101 Many, 100 Medium, 20 Medium, 19 Few, 5 Few.
TRAIN_COUNTS = [101, 100, 20, 19, 5]


def test_confusion_update_hand_built():
  out = jax.jit(metrics.confusion_update, static_argnums=2)(
      logits_predicting(PREDS, 5), jnp.array(LABELS), 5)
  assert out["confusion"].dtype == jnp.int32 and out["top5_correct"].dtype == jnp.int32
  np.testing.assert_array_equal(out["confusion"], EXPECTED_CONFUSION)
  np.testing.assert_array_equal(out["top5_correct"], [4, 2, 1, 3, 0])  # C = 5: always a hit


def test_summarize_hand_built():
  s = metrics.summarize(np.array(EXPECTED_CONFUSION), np.array([4, 2, 1, 3, 0]), TRAIN_COUNTS)
  assert s["num_examples"] == 10
  assert s["top1_acc"] == pytest.approx(70.0)
  assert s["top1_err"] == pytest.approx(30.0)
  assert s["top5_acc"] == pytest.approx(100.0)
  assert s["per_class_acc"][:4] == pytest.approx([75.0, 50.0, 100.0, 200.0 / 3])
  assert s["per_class_acc"][4] is None
  assert s["per_class_count"] == [4, 2, 1, 3, 0]
  assert s["balanced_acc"] == pytest.approx((75.0 + 50.0 + 100.0 + 200.0 / 3) / 4)
  assert s["many_acc"] == pytest.approx(75.0)  # class 0 (101)
  assert s["medium_acc"] == pytest.approx(75.0)  # classes 1 (100) and 2 (20)
  assert s["few_acc"] == pytest.approx(200.0 / 3)  # class 3 (19); class 4 has no test image
  assert s["confusion"] == EXPECTED_CONFUSION
  json.loads(json.dumps(s))


def test_split_counts_by_scatter_equal_the_one_hot_batch_counts():
  rng = np.random.default_rng(0)
  logits, labels = jnp.asarray(rng.normal(size=(40, 7)), jnp.float32), jnp.asarray(
      rng.integers(0, 7, 40))
  batch = metrics.confusion_update(logits, labels, 7)
  split = metrics.split_confusion(logits, labels, 7)
  np.testing.assert_array_equal(split["confusion"], batch["confusion"])
  np.testing.assert_array_equal(split["top5_correct"], batch["top5_correct"])
  hits = metrics.per_class_hits(logits, labels, 7)
  np.testing.assert_array_equal(hits["correct"], np.diag(batch["confusion"]))
  np.testing.assert_array_equal(hits["count"], np.bincount(np.asarray(labels), minlength=7))
  np.testing.assert_array_equal(hits["top5"], batch["top5_correct"])


def test_summarize_hits_is_summarize_from_the_diagonal_and_row_sums():
  confusion = np.array(EXPECTED_CONFUSION)
  full = metrics.summarize(confusion, np.array([4, 2, 1, 3, 0]), TRAIN_COUNTS)
  hits = metrics.summarize_hits(np.diag(confusion), confusion.sum(axis=1),
                                np.array([4, 2, 1, 3, 0]), TRAIN_COUNTS)
  assert hits == {k: v for k, v in full.items() if k != "confusion"}
  assert "confusion" not in metrics.summarize(confusion, np.array([4, 2, 1, 3, 0]),
                                              TRAIN_COUNTS, with_confusion=False)
  with pytest.raises(ValueError, match="per_class_count"):
    metrics.summarize_hits(np.ones(3), np.ones(2), np.ones(3), [1, 2, 3])


def test_summarize_empty_groups_are_none():
  conf = np.array(EXPECTED_CONFUSION)
  top5 = np.array([4, 2, 1, 3, 0])
  s = metrics.summarize(conf, top5, [500, 400, 300, 200, 101])
  assert s["many_acc"] is not None and s["medium_acc"] is None and s["few_acc"] is None
  # A group whose only class has no test image is None too.
  s = metrics.summarize(conf, top5, [500, 400, 300, 200, 5])
  assert s["few_acc"] is None
  s = metrics.summarize(np.zeros((3, 3), int), np.zeros(3, int), [1, 50, 500])
  assert s["top1_acc"] is None and s["top1_err"] is None and s["balanced_acc"] is None
  assert s["per_class_acc"] == [None, None, None]
  json.dumps(s)


def test_top5_with_fewer_than_five_classes():
  logits = jnp.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
  out = metrics.confusion_update(logits, jnp.array([2, 0, 1]), 3)
  np.testing.assert_array_equal(out["top5_correct"], [1, 1, 1])  # k = C = 3: all hits
  np.testing.assert_array_equal(out["confusion"], [[0, 0, 1], [1, 0, 0], [1, 0, 0]])


def test_top5_with_more_classes():
  # 7 classes; logits rank the classes 0 > 1 > ... > 6.
  logits = jnp.tile(jnp.arange(7, 0, -1, dtype=jnp.float32), (4, 1))
  out = metrics.confusion_update(logits, jnp.array([0, 4, 5, 6]), 7)
  np.testing.assert_array_equal(out["top5_correct"], [1, 0, 0, 0, 1, 0, 0])
  s = metrics.summarize(out["confusion"], out["top5_correct"], [10] * 7)
  assert s["top5_acc"] == pytest.approx(50.0) and s["top1_acc"] == pytest.approx(25.0)


def test_confusion_update_masks_padding():
  preds = PREDS + [3, 3, 0]
  labels = LABELS + [0, 3, -1]  # padded rows: a real-looking label, another, and -1
  where = jnp.array([True] * len(LABELS) + [False, False, True])
  update = jax.jit(functools.partial(metrics.confusion_update, num_classes=5))
  out = update(logits_predicting(preds, 5), jnp.array(labels), where=where)
  np.testing.assert_array_equal(out["confusion"], EXPECTED_CONFUSION)
  np.testing.assert_array_equal(out["top5_correct"], [4, 2, 1, 3, 0])


def test_confusion_sums_over_batches():
  logits = logits_predicting(PREDS, 5)
  labels = jnp.array(LABELS)
  a = metrics.confusion_update(logits[:6], labels[:6], 5)
  b = metrics.confusion_update(logits[6:], labels[6:], 5)
  np.testing.assert_array_equal(a["confusion"] + b["confusion"], EXPECTED_CONFUSION)


def test_summarize_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="train_counts"):
    metrics.summarize(np.eye(3, dtype=int), np.ones(3, int), [1, 2])
  with pytest.raises(ValueError, match="square"):
    metrics.summarize(np.ones((3, 2), int), np.ones(3, int), [1, 2, 3])


def test_format_table():
  s = metrics.summarize(np.array(EXPECTED_CONFUSION), np.array([4, 2, 1, 3, 0]), TRAIN_COUNTS)
  empty = metrics.summarize(np.array(EXPECTED_CONFUSION), np.array([4, 2, 1, 3, 0]),
                            [500, 400, 300, 200, 101])
  table = metrics.format_table({"final": s, "best": empty})
  lines = table.split("\n")
  assert lines[0] == ("| name | top-1 err | top-1 acc | top-5 acc | balanced acc | many | medium "
                      "| few |")
  assert lines[1] == "|---|---|---|---|---|---|---|---|"
  assert lines[2] == "| final | 30.00 | 70.00 | 100.00 | 72.92 | 75.00 | 75.00 | 66.67 |"
  assert lines[3] == "| best | 30.00 | 70.00 | 100.00 | 72.92 | 72.92 | - | - |"
  assert len(lines) == 4
