"""What a finished run leaves behind: results.json and a plot of accuracy against class size."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lt_jax import io_utils  # noqa: E402
from lt_jax.data import datasets, image_lists  # noqa: E402

PLOT_FILE = "per_class_accuracy.png"
# Config field train.select_on: which epoch the `best` block reports. auto: val when a
# validation split exists, else test (the reference's habit, flagged as optimistic).
SELECT_ON = ("auto", "val", "test", "last")


def resolve_selection(config) -> str:
  if config.train.select_on != "auto":
    return config.train.select_on
  return "val" if config.dataset.val_per_class > 0 or has_own_val(config) else "test"


def has_own_val(config) -> bool:
  """Whether the data brings a validation split apart from its test split: a list dataset's
  validation list (ImageNet-LT's; iNaturalist 2018's validation list is its test set), or an
  image folder's val/."""
  spec = datasets.get(config.dataset.name)
  if spec.host_fed:
    return {"val", "test"} <= set(image_lists.present_splits(config.dataset.lists_dir, spec))
  return spec.has_val is not None and spec.has_val(config.dataset.data_dir)


def plot_per_class_accuracy(path: str, class_counts, blocks: dict[str, dict],
                            title: str = "") -> None:
  """Per-class test accuracy against training images per class (log scale), one series per
  block (e.g. final and best), with the Many/Medium/Few boundaries marked."""
  counts = np.asarray(class_counts, np.float64)
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  markers = iter(["o", "s", "^", "D", "v"])
  for name, block in blocks.items():
    acc = np.asarray([np.nan if a is None else a for a in block["per_class_acc"]], np.float64)
    order = np.argsort(-counts)
    ax.plot(np.maximum(counts[order], 1), acc[order], marker=next(markers), linewidth=1,
            markersize=4, label=f"{name} (top-1 {block['top1_acc']:.2f}%)")
  for boundary in (20, 100):
    ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
  ax.set_xscale("log")
  ax.set_xlabel("training images in the class")
  ax.set_ylabel("test accuracy of the class (%)")
  ax.set_ylim(-2, 102)
  ax.set_title(title or "Per-class accuracy against class size")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  fig.tight_layout()
  io_utils.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
  plt.close(fig)
