"""Semi-supervised and SSP pipelines end to end on digits-LT with the tiny ResNet."""

import json
import os

import jax
import numpy as np
import pytest
from conftest import killed_at_epoch, tiny_config

from lt_jax import pipeline, recipe, semi, transfer
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.config import override
from lt_jax.data import longtail, prepare, unlabeled
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import create_model
from lt_jax.train import optim
from lt_jax.train import step as step_lib
from lt_jax.validate import validate


def semi_config(**overrides):
  c = tiny_config(train__num_epochs=2, **overrides)
  c.dataset.img_max = 40  # 159 labeled digits leave >= 86 per class for a pool of 79.
  c.semi.enabled = True
  c.semi.base_batch_size = 32
  return c


def mtime(path):
  return os.stat(path).st_mtime_ns


def test_pool_never_holds_test_labeled_or_validation_images():
  config = semi_config(dataset__val_per_class=3)
  drawn = prepare.draw(config.dataset)
  pool = semi.draw_pool(config, drawn)
  assert pool.requested_counts == [79] * 10
  assert len(np.intersect1d(pool.source_indices, drawn.used_train_indices)) == 0
  assert pool.source_indices.max() < len(drawn.source.train.labels)
  train = drawn.source.train
  np.testing.assert_array_equal(pool.images, train.images[pool.source_indices])
  np.testing.assert_array_equal(pool.true_labels, train.labels[pool.source_indices])


def test_the_pools_imbalance_favours_the_head_the_tail_or_no_class():
  # rho_U 5 over the labeled digits' 159 images, factor 2: consistent gives the labeled set's
  # head classes (class 0 first) the most, reversed its tail, uniform every class alike.
  drawn = prepare.draw(semi_config().dataset)
  consistent = longtail.unlabeled_counts(159, 10, 5, 2)
  assert consistent[0] > consistent[-1]
  pools = {d: semi.draw_pool(semi_config(semi__unlabeled_ratio=1 if d == "uniform" else 5,
                                         semi__unlabeled_factor=2,
                                         semi__unlabeled_direction=d), drawn)
           for d in unlabeled.DIRECTIONS}
  assert pools["consistent"].requested_counts == consistent
  assert pools["reversed"].requested_counts == consistent[::-1]
  assert pools["uniform"].requested_counts == [31] * 10  # 2 * 159 // 10 = 31 each.
  for pool in pools.values():  # The draw took what it asked for, by the pool's true labels.
    assert np.bincount(pool.true_labels, minlength=10).tolist() == pool.requested_counts
  with pytest.raises(ConfigError, match=r"semi.unlabeled_direction='uniform' draws every class "
                                        r"alike, but semi.unlabeled_ratio=5; set "):
    validate(semi_config(semi__unlabeled_ratio=5, semi__unlabeled_direction="uniform"))
  with pytest.raises(ConfigError, match=r"semi.unlabeled_direction='sideways' is unknown"):
    validate(semi_config(semi__unlabeled_direction="sideways"))


def test_semi_pipeline_runs_skips_and_resumes(tmp_path):
  config = semi_config()
  # Base: epochs 1-2; the final stage's first epoch is cut off.
  killed_at_epoch(lambda: pipeline.run(config, str(tmp_path)), 3)
  base_results = tmp_path / "base" / workdir_lib.RESULTS_FILE
  labels_file = tmp_path / "pseudo_labels" / workdir_lib.PSEUDO_LABELS_FILE
  stamps = mtime(base_results), mtime(labels_file)
  assert not (tmp_path / workdir_lib.RESULTS_FILE).exists()

  out = pipeline.run(config, str(tmp_path))
  assert (mtime(base_results), mtime(labels_file)) == stamps  # Finished stages were skipped.
  assert set(out["stages"]) == {"base", "pseudo_labels", "final"}
  labels = out["stages"]["pseudo_labels"]
  assert labels["num_pool"] == labels["num_kept"] == 790
  final = out["stages"]["final"]
  assert final["dataset"]["train_size"] == 159 + 790
  saved = semi.read_pseudo_labels(str(labels_file))
  # The report against the file and the source's own labels of the drawn images.
  true = prepare.draw(config.dataset).source.train.labels[saved["indices"]]
  assert labels["accuracy"] == pytest.approx(100.0 * np.mean(saved["pseudo_labels"] == true))
  assert labels["distribution"] == np.bincount(saved["pseudo_labels"], minlength=10).tolist()
  labeled_counts = out["stages"]["base"]["class_counts"]
  assert final["class_counts"] == (np.asarray(labeled_counts) + np.bincount(
      saved["pseudo_labels"], minlength=10)).tolist()
  assert final["group_counts"] == labeled_counts
  assert out["final"] == final["final"]
  assert (tmp_path / "pseudo_labels" / "pseudo_labels.png").exists()

  again = pipeline.run(config, str(tmp_path))  # Finished: read back, nothing retrained.
  assert again == json.loads((tmp_path / workdir_lib.RESULTS_FILE).read_text())

  changed = override(config, **{"semi.enabled": False,
                                "semi.pseudo_labels": str(labels_file),
                                "semi.unlabeled_factor": 4})
  with pytest.raises(DataError, match="different unlabeled pool"):
    recipe.training_data(changed)

  # Every label shifted by one stays in range and passes every other check; the checksum the
  # pseudo-label stage recorded in report.json does not.
  reread = override(config, **{"semi.enabled": False, "semi.pseudo_labels": str(labels_file)})
  assert len(recipe.training_data(reread).train.labels) == 159 + 790
  with open(labels_file, "wb") as f:
    np.savez(f, **(saved | {"pseudo_labels": (saved["pseudo_labels"] + 1) % 10}))
  with pytest.raises(DataError, match=r"changed after the pseudo-label stage wrote it .*"
                     r"delete .*pseudo_labels and run the same command again"):
    recipe.training_data(reread)


def test_pseudo_label_report_is_rebuilt_from_an_existing_file(tmp_path):
  config = semi_config()
  base = tmp_path / "base"
  pipeline.run(override(config, **{"semi.enabled": False,
                                   "train.num_epochs": 1}), str(base))
  labeled, pool = recipe.labeled_and_pool(config)
  path, report = pipeline.generate_pseudo_labels(config, str(base), str(tmp_path / "pl"), pool,
                                                 labeled)
  # Cut off after the .npz was written.
  os.remove(tmp_path / "pl" / workdir_lib.PSEUDO_LABEL_REPORT_FILE)
  stamp = mtime(path)
  _, again = pipeline.generate_pseudo_labels(config, str(base), str(tmp_path / "pl"), pool,
                                             labeled)
  untimed = lambda r: {k: v for k, v in r.items() if k != "wall_time_s"}  # noqa: E731
  assert mtime(path) == stamp and untimed(again) == untimed(json.loads(json.dumps(report)))


def ssp_config(method, **overrides):
  c = tiny_config(train__num_epochs=1, **overrides)
  c.pretrain.method = method
  c.pretrain.num_epochs = 1
  c.pretrain.probe_epochs = 1
  c.pretrain.queue_size = 64
  c.pretrain.proj_hidden = 16
  c.pretrain.proj_dim = 8
  return c


def backbone_leaves(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def assert_same_tree(a, b):
  la, lb = backbone_leaves(a), backbone_leaves(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (path, x), (_, y) in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def fresh_state(name="resnet_tiny", num_classes=10):
  c = tiny_config()
  model = create_model(name, num_classes=num_classes)
  tx = optim.make_optimizer(c.optim, 1, 1)
  mesh_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return step_lib.create_state(model, tx, (8, 8, 1), 1, mesh_sharding), mesh_sharding


def test_init_from_restores_backbone_and_reinitialises_head(tmp_path):
  pipeline.run(tiny_config(train__num_epochs=1), str(tmp_path / "src"))
  source, _ = Checkpoints(str(tmp_path / "src" / "checkpoints" / "last")).restore()
  state, sharding = fresh_state(num_classes=7)  # Another head: only the backbone must fit.
  restored = transfer.init_backbone_from(state, str(tmp_path / "src"), sharding)
  assert_same_tree(restored.params["backbone"], source["params"]["backbone"])
  assert_same_tree(restored.batch_stats["backbone"], source["batch_stats"]["backbone"])
  assert_same_tree(restored.params["head"], state.params["head"])


def test_init_from_mismatch_lists_the_leaves(tmp_path):
  pipeline.run(tiny_config(train__num_epochs=1), str(tmp_path / "src"))
  state, sharding = fresh_state("resnet20")
  with pytest.raises(ConfigError, match="missing from the checkpoint: .*layer1_1") as err:
    transfer.init_backbone_from(state, str(tmp_path / "src"), sharding)
  assert "shape mismatch" in str(err.value)
  with pytest.raises(DataError, match="holds no checkpoint"):
    transfer.init_backbone_from(state, str(tmp_path / "nothing"), sharding)


def test_pipelines_do_not_combine():
  c = semi_config()
  c.pretrain.method = "rotation"
  with pytest.raises(ConfigError, match="semi.enabled and pretrain.method"):
    pipeline.run(c, "/nonexistent")


def test_an_array_pool_is_fingerprinted_by_its_content():
  # Two pools of one shape: the shape alone let a different npz through between stages.
  a = np.zeros((5, 8, 8, 1), np.uint8)
  b = a.copy()
  b[3, 4, 4, 0] = 1
  assert semi.fingerprint(a) != semi.fingerprint(b)
  assert semi.fingerprint(a) == semi.fingerprint(a.copy())
  assert semi.fingerprint(a).startswith("array:(5, 8, 8, 1):sha256:")
  saved = {"pool_source": "npz", "pool_draw_on": "labels",
           "pool_fingerprint": semi.fingerprint(a)}
  with pytest.raises(DataError, match="different unlabeled pool.*pool_fingerprint"):
    semi._check_provenance("labels.npz", saved, {"pool_fingerprint": semi.fingerprint(b)})
  # A file from before the content was recorded holds the shape alone: still accepted.
  legacy = saved | {"pool_fingerprint": "array:(5, 8, 8, 1)"}
  semi._check_provenance("labels.npz", legacy, {"pool_fingerprint": semi.fingerprint(b)})
