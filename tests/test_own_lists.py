"""A user's own split lists (dataset.name=image_lists): the ImageNet-LT list format with any
number of classes, `train.txt` and `test.txt` (and `val.txt` when there is one), decoded on
the host."""

import numpy as np
import pytest
from jpeg_tree import write_tree
from test_list_training import list_config

from lt_jax import inputs, pipeline
from lt_jax import workdir as workdir_lib
from lt_jax.errors import DataError

COUNTS = {"train": (12, 6, 3), "test": (2, 3, 1)}  # Three classes.


def own_config(tree, **fields):
  return list_config(tree, **{"dataset.name": "image_lists", "train.num_epochs": 1,
                              "optim.decay_epochs": (), "optim.decay_factors": (), **fields})


def test_own_lists_train_with_the_classes_and_counts_they_hold(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="")
  out = pipeline.run(own_config(tree), str(tmp_path / "run"))
  assert out["dataset"]["num_classes"] == 3  # 1 + the largest label listed.
  assert out["class_counts"] == [12, 6, 3] and out["dataset"]["test_size"] == 6
  assert out["final"]["per_class_count"] == [2, 3, 1]
  assert out["selected_on"] == "test"  # No val.txt: the best epoch is chosen on test, flagged.
  confusion = np.load(tmp_path / "run" / inputs.CONFUSION_FILE)["test"]
  assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [2, 3, 1]
  assert (tmp_path / "run" / workdir_lib.RESULTS_FILE).exists()


def test_a_val_list_selects_the_best_epoch(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS | {"val": (1, 1, 1)}, prefix="")
  out = pipeline.run(own_config(tree), str(tmp_path / "run"))
  assert out["selected_on"] == "val" and out["dataset"]["val_size"] == 3


def test_a_missing_test_list_is_named_before_any_work(tmp_path):
  tree = write_tree(tmp_path / "tree", {"train": (2, 2)}, prefix="")
  with pytest.raises(DataError, match=r"test.txt is missing: put train.txt, test.txt \(and "
                                      r"val.txt"):
    pipeline.run(own_config(tree), str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()
