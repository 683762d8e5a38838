"""Semi-supervised training on a host-fed list dataset: the unlabeled pool is "the rest of the
source" (images in the training folders that no list names, as the ImageNet images that
ImageNet-LT left out) or an image folder, drawn by the rho_U rule on folder labels or on the
base model's predictions, labeled through the host pipeline."""

import itertools
import json
import os
import shutil

import numpy as np
import pytest
from jpeg_tree import write_tree
from test_own_lists import own_config

from lt_jax import inputs, parallel, pipeline, semi
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import list_pools, longtail, samplers
from lt_jax.errors import ConfigError, DataError

COUNTS = {"train": (12, 6, 3), "test": (2, 2, 2)}  # Three classes, listed.
UNLISTED = {"train": (9, 8, 8)}  # Beside the listed training images, in their class folders.


def semi_config(tree, **fields):
  return own_config(tree, **{"semi.enabled": True, "semi.unlabeled_factor": 1,
                             "semi.base_batch_size": 8, "train.batch_size": 8, **fields})


def listed_paths(tree) -> set[str]:
  return {os.path.join(str(tree), line.split()[0]) for name in ("train.txt", "test.txt")
          for line in (tree / name).read_text().split("\n") if line}


def test_the_rest_of_the_source_is_every_unlisted_image_in_the_training_folders(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted=UNLISTED)
  splits = inputs.read_splits(semi_config(tree).dataset)
  found = list_pools.candidates(semi_config(tree), splits, 3)
  on_disk = {os.path.join(d, f) for d, _, files in os.walk(tree / "train") for f in files}
  assert set(found.images.paths) == on_disk - listed_paths(tree)
  assert list(found.images.paths) == sorted(found.images.paths)  # A fixed listing.
  # Labels from the folders: c0/ holds the listed class-0 images, and so on.
  want = [int(os.path.basename(os.path.dirname(p))[1:]) for p in found.images.paths]
  assert found.labels.tolist() == want and np.bincount(want).tolist() == [9, 8, 8]


def test_a_folder_of_mixed_classes_leaves_the_pool_without_labels(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted=UNLISTED)
  lines = (tree / "train.txt").read_text().split("\n")
  first = lines[0].split()
  lines[0] = f"{first[0]} 1"  # A class-0 folder now lists an image of class 1.
  (tree / "train.txt").write_text("\n".join(lines))
  config = semi_config(tree)
  found = list_pools.candidates(config, inputs.read_splits(config.dataset), 3)
  assert found.labels is None and len(found.images) == 25
  with pytest.raises(ConfigError, match="pool_draw_on='labels' but"):
    list_pools.draw(semi_config(tree, **{"semi.pool_draw_on": "labels"}),
                    inputs.read_splits(config.dataset), 3)


def test_semi_on_lists_with_the_rest_of_the_source_drawn_on_folder_labels(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted=UNLISTED)
  out = pipeline.run(semi_config(tree), str(tmp_path / "run"))
  labels_path = tmp_path / "run" / "pseudo_labels" / workdir_lib.PSEUDO_LABELS_FILE
  saved = semi.read_pseudo_labels(str(labels_path), 3)
  # rho_U 1, factor 1: T = 21 labeled images, 7 per class, in the order of the labeled counts.
  assert longtail.unlabeled_counts(21, 3, 1.0, 1) == [7, 7, 7]
  config = semi_config(tree)
  found = list_pools.candidates(config, inputs.read_splits(config.dataset), 3)
  rng, want = np.random.RandomState(0), []
  for c in (0, 1, 2):  # The reference's draw: shuffle each class's candidates, keep the first.
    idx = np.flatnonzero(found.labels == c)
    rng.shuffle(idx)
    want.extend(idx[:7])
  assert saved["indices"].tolist() == want
  assert saved["true_labels"].tolist() == found.labels[want].tolist()
  assert not {found.images.paths[i] for i in saved["indices"]} & listed_paths(tree)
  report = json.loads((labels_path.parent / workdir_lib.PSEUDO_LABEL_REPORT_FILE).read_text())
  agree = saved["pseudo_labels"] == saved["true_labels"]
  assert report["accuracy"] == pytest.approx(100.0 * agree.mean())
  # The final model trains on the 21 listed images and the 21 pseudo-labeled ones.
  final = out["stages"]["final"]
  counts = np.bincount(np.concatenate([np.repeat([0, 1, 2], COUNTS["train"]),
                                       saved["pseudo_labels"]]), minlength=3)
  assert final["class_counts"] == counts.tolist() and final["dataset"]["train_size"] == 42
  assert final["group_counts"] == [12, 6, 3]  # Many / Medium / Few by the labeled counts.
  assert set(out["stages"]) == {"base", "pseudo_labels", "final"}


def test_semi_on_lists_drawn_on_predictions(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted=UNLISTED)
  # Every final-stage batch: 4 labeled images first, then 4 pseudo-labeled ones.
  config = semi_config(tree, **{"semi.pool_draw_on": "predictions",
                                "semi.short_class_policy": "take_available",
                                "semi.unlabeled_ratio": 2.0,
                                "semi.unlabeled_batch_fraction": 0.5})
  pipeline.run(config, str(tmp_path / "run"))
  labels_path = str(tmp_path / "run" / "pseudo_labels" / workdir_lib.PSEUDO_LABELS_FILE)
  saved = semi.read_pseudo_labels(labels_path, 3)
  assert str(saved["pool_draw_on"]) == "predictions"
  asked = longtail.unlabeled_counts(21, 3, 2.0, 1)  # In class order 0, 1, 2.
  got = np.bincount(saved["pseudo_labels"], minlength=3)
  assert (got <= asked).all() and len(np.unique(saved["indices"])) == len(saved["indices"])
  # The final stage's training list: the labeled list, then the kept pool files with their
  # pseudo-labels.
  final_cfg = override(config, **{"semi.enabled": False, "semi.pseudo_labels": labels_path})
  final = inputs.HostInput.of(final_cfg)
  found = list_pools.candidates(config, inputs.read_splits(config.dataset), 3)
  train, keep = final.splits["train"], saved["keep"].astype(bool)
  assert train.paths[:21].tolist() == inputs.read_splits(config.dataset)["train"].paths.tolist()
  assert train.paths[21:].tolist() == found.images.paths[saved["indices"][keep]].tolist()
  assert train.labels[21:].tolist() == saved["pseudo_labels"][keep].tolist()
  assert final.facts.num_labeled == 21 and final.facts.report_counts == [12, 6, 3]
  feed = final.train_data(final_cfg, parallel.make_mesh())
  assert feed.stream["labeled_per_batch"] == 4
  order = samplers.MixedOrder(21, len(train) - 21, 8, 4, seed=final_cfg.seed)
  for step, rows in enumerate(itertools.islice(feed.batches_from(0), 3)):
    picked = [order.index(step, r) for r in range(8)]
    assert all(i < 21 for i in picked[:4]) and all(i >= 21 for i in picked[4:])
    assert rows["label"].tolist() == train.labels[picked].tolist()
  # Another pool (an image added beside the others) is refused, naming the difference.
  shutil.copy(found.images.paths[0], tree / "train" / "c2" / "zz.JPEG")
  with pytest.raises(DataError, match="different unlabeled pool.*pool_fingerprint"):
    inputs.HostInput.of(final_cfg)


def test_an_image_folder_pool_on_lists_is_drawn_on_its_class_folders(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted={"pool": (8, 8, 8)})
  for c in range(3):  # Class sub-folders named by id label the pool's images.
    os.rename(tree / "pool" / f"c{c}", tree / "pool" / str(c))
  config = semi_config(tree, **{"semi.pool_source": "image_folder",
                                "semi.image_folder": str(tree / "pool")})
  pool = list_pools.draw(config, inputs.read_splits(config.dataset), 3)
  assert pool.requested_counts == [7, 7, 7] and len(pool.images) == 21
  folders = [int(os.path.basename(os.path.dirname(p))) for p in pool.images.paths]
  assert folders == pool.true_labels.tolist() and np.bincount(folders).tolist() == [7, 7, 7]
  # The files are checked before any training: a broken one is named.
  (tree / "pool" / "1" / "broken.png").write_bytes(b"not an image")
  with pytest.raises(DataError, match="broken.png"):
    list_pools.draw(config, inputs.read_splits(config.dataset), 3)


def test_a_request_the_rest_of_the_source_cannot_hold_stops_before_training(tmp_path):
  tree = write_tree(tmp_path / "tree", COUNTS, prefix="", unlisted=UNLISTED)
  # Factor 5: 105 images asked, 25 unlisted, drawn on predictions: only the total is known.
  config = semi_config(tree, **{"semi.unlabeled_factor": 5, "semi.pool_draw_on": "predictions"})
  with pytest.raises(ConfigError, match=r"asks for 105 unlabeled images but the rest of the "
                                        r"source holds only 25"):
    pipeline.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "base").exists()


def test_the_host_mixed_order_follows_its_law():
  """Row r < L of step t: position t L + r of the labeled part's permutations
  default_rng([seed, 1, k]); the rest: position t (B - L) + r - L of the unlabeled part's
  default_rng([seed, 2, k]), after the labeled images."""
  order = samplers.MixedOrder(5, 7, 4, 2, seed=3)
  rows = [[order.index(t, r) for r in range(4)] for t in range(6)]
  labeled = np.concatenate([np.random.default_rng([3, 1, k]).permutation(5) for k in range(3)])
  pool = 5 + np.concatenate([np.random.default_rng([3, 2, k]).permutation(7) for k in range(2)])
  assert [r[:2] for r in rows] == labeled[:12].reshape(6, 2).tolist()
  assert [r[2:] for r in rows] == pool[:12].reshape(6, 2).tolist()
