"""Decoupled classifiers: the class-aware sampler, cRT, LWS, tau-norm and post-hoc logit
adjustment, and the pipeline that runs them after stage 1."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_class_aware_cycles, tiny_config

from lt_jax import checkpoint, decouple, io_utils, pipeline
from lt_jax import workdir as workdir_lib
from lt_jax.config import override
from lt_jax.data import samplers
from lt_jax.errors import ConfigError
from lt_jax.validate import validate

# --- the class-aware sampler ----------------------------------------------------------------


def _stream(labels, batch, k, steps, seed=0):
  sampler = jax.jit(samplers.make_sampler("class_aware", labels, int(labels.max()) + 1, batch,
                                          samples_per_class=k))
  key = jax.random.key(seed)
  return np.concatenate([np.asarray(sampler(key, jnp.int32(s))) for s in range(steps)])


def test_class_aware_sampler_follows_the_reference_cycles():
  labels = np.repeat(np.arange(4), [9, 5, 3, 1])  # Class sizes 9, 5, 3, 1.
  np.random.default_rng(0).shuffle(labels)
  k, rounds = 3, 6
  assert_class_aware_cycles(labels, _stream(labels, batch=12, k=k, steps=rounds * 4 * k // 12), k)


def test_class_aware_sampler_is_a_pure_function_of_key_and_step():
  labels = np.repeat(np.arange(3), [7, 4, 2])
  a = _stream(labels, batch=8, k=2, steps=5)
  assert np.array_equal(a, _stream(labels, batch=8, k=2, steps=5))
  assert not np.array_equal(a, _stream(labels, batch=8, k=2, steps=5, seed=1))
  # A batch size that splits visits across steps gives the same stream.
  assert np.array_equal(a[:36], _stream(labels, batch=12, k=2, steps=3))


def test_class_aware_sampler_skips_an_absent_class():
  drawn = _stream(np.array([0, 0, 2, 2, 2]), batch=4, k=1, steps=3)
  assert set(drawn) == {0, 1, 2, 3, 4}  # Classes 0 and 2 alternate; class 1 has no image.


# --- the post-hoc classifiers ---------------------------------------------------------------


def test_tau_norm_at_0_and_1():
  kernel = np.array([[3.0, 0.0], [4.0, 2.0]])  # Column norms 5 and 2.
  features = np.array([[1.0, 1.0], [2.0, -1.0]])
  assert np.allclose(decouple.tau_norm_logits(features, kernel, 0.0), features @ kernel)
  assert np.allclose(decouple.tau_norm_logits(features, kernel, 1.0),
                     [[7 / 5, 2 / 2], [2 / 5, -2 / 2]])
  half = decouple.tau_norm_logits(features, kernel, 0.5)
  assert np.allclose(half, features @ (kernel / np.sqrt([5.0, 2.0])))


def test_adjusted_logits_subtract_tau_log_prior():
  logits = np.array([[2.0, 1.0, 0.0]])
  counts = [60, 30, 10]
  out = decouple.adjusted_logits(logits, counts, 1.5)
  assert np.allclose(out, [[2.0 - 1.5 * np.log(0.6), 1.0 - 1.5 * np.log(0.3),
                            -1.5 * np.log(0.1)]])
  # An empty class is treated as the rarest present one: boosted, finite.
  empty = decouple.adjusted_logits(np.zeros((1, 3)), [8, 2, 0], 1.0)
  assert np.isfinite(empty).all() and empty[0, 2] == empty[0, 1]


# --- cRT, LWS and the pipeline --------------------------------------------------------------


def _config(**decouple_fields):
  c = tiny_config(train__num_epochs=2, dataset__val_per_class=10)
  c.optim.decay_epochs, c.optim.decay_factors = (), ()
  return override(c, **{"decouple.num_epochs": 1, "decouple.batch_size": 32,
                        **{f"decouple.{k}": v for k, v in decouple_fields.items()}})


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
  """One finished stage 1 (a plain run) that every test below decouples."""
  workdir = str(tmp_path_factory.mktemp("stage1"))
  pipeline.run(_config(), workdir)
  return workdir


def _saved(workdir, which="last"):
  state, _ = checkpoint.restore_saved(workdir_lib.checkpoint_dir(workdir, which))
  return jax.tree.map(np.asarray, state)


def _equal(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


@pytest.mark.parametrize("update_bn_stats", [None, False, True])
def test_crt_trains_only_a_new_classifier(stage1, tmp_path, update_bn_stats):
  fields = {} if update_bn_stats is None else {"update_bn_stats": update_bn_stats}
  out = pipeline.run(_config(methods=("crt",), stage1_workdir=stage1, **fields), str(tmp_path))
  # Stage 1 selected on its validation split, so the second stage starts from its best.
  assert out["stage1_checkpoint"]["which"] == "best"
  before, after = _saved(stage1, "best"), _saved(str(tmp_path / "crt"))
  assert _equal(before["params"]["backbone"], after["params"]["backbone"])
  # The reference's backbone stays in train mode, so by default its BatchNorm statistics
  # follow the class-balanced batches; update_bn_stats=False keeps them.
  assert _equal(before["batch_stats"], after["batch_stats"]) == (update_bn_stats is False)
  assert not np.allclose(before["params"]["head"]["kernel"], after["params"]["head"]["kernel"])
  crt = out["stages"]["crt"]
  assert crt["config"]["train"]["sampler"] == "class_aware"
  assert set(out["stages"]) == {"stage1", "crt"}


def test_crt_starts_from_the_best_checkpoint_where_best_and_last_differ(stage1, tmp_path):
  # A stage 1 whose best checkpoint is another run's weights: best and last surely differ.
  copy, other = str(tmp_path / "stage1"), str(tmp_path / "other")
  shutil.copytree(stage1, copy)
  pipeline.run(override(_config(), **{"seed": 1, "train.num_epochs": 1}), other)
  shutil.rmtree(workdir_lib.checkpoint_dir(copy, "best"))
  shutil.copytree(workdir_lib.checkpoint_dir(other), workdir_lib.checkpoint_dir(copy, "best"))
  # Recorded anew, or cRT would refuse a checkpoint changed after stage 1 finished.
  recorded = workdir_lib.read_results(copy)
  recorded["checkpoints"] = workdir_lib.checkpoint_digests(copy)
  io_utils.atomic_write_json(os.path.join(copy, workdir_lib.RESULTS_FILE), recorded)
  pipeline.run(_config(methods=("crt",), stage1_workdir=copy), str(tmp_path / "crt"))
  backbone = _saved(str(tmp_path / "crt" / "crt"))["params"]["backbone"]
  assert _equal(backbone, _saved(other)["params"]["backbone"])
  assert not _equal(backbone, _saved(copy)["params"]["backbone"])


def test_without_a_validation_split_the_last_checkpoint_is_used_and_said(tmp_path):
  c = override(_config(methods=("logit_adjust",), taus=(0.0,), tune_on="test"),
               **{"dataset.val_per_class": 0})
  out = pipeline.run(c, str(tmp_path))
  start = out["stages"]["logit_adjust"]["stage1_checkpoint"]
  assert start == out["stage1_checkpoint"]
  assert start["which"] == "last" and "selected on 'test'" in start["note"]
  assert start["folder"] == workdir_lib.checkpoint_dir(str(tmp_path / "stage1"), "last")
  # tau 0 leaves stage 1's logits: its last epoch's accuracy.
  assert out["stages"]["logit_adjust"]["tau_0"]["top1_acc"] == pytest.approx(
      out["stages"]["stage1"]["final"]["top1_acc"])


def test_lws_learns_only_the_class_scales(stage1, tmp_path):
  out = pipeline.run(_config(methods=("lws",), stage1_workdir=stage1, update_bn_stats=False,
                             lws_num_epochs=2), str(tmp_path))
  assert out["stages"]["lws"]["final"]["epoch"] == 2  # decouple.lws_num_epochs, not num_epochs.
  before, after = _saved(stage1, "best"), _saved(str(tmp_path / "lws"))
  assert _equal(before["params"]["backbone"], after["params"]["backbone"])
  assert _equal(before["batch_stats"], after["batch_stats"])
  for name in ("kernel", "bias"):
    assert np.array_equal(before["params"]["head"][name], after["params"]["head"][name])
  assert not np.allclose(after["params"]["head"]["scales"], 1.0)


@pytest.mark.parametrize("method", ["tau_norm", "logit_adjust"])
def test_post_hoc_picks_the_best_tau_on_validation(stage1, tmp_path, method):
  workdir = str(tmp_path)
  out = pipeline.run(_config(methods=(method,), stage1_workdir=stage1, taus=(0.0, 0.5, 1.0)),
                     workdir)
  res = out["stages"][method]
  assert [row["tau"] for row in res["curve"]] == [0.0, 0.5, 1.0]
  val = [row["val_top1_acc"] for row in res["curve"]]
  assert res["tau"] == [0.0, 0.5, 1.0][int(np.argmax(val))]
  assert res["tuned_on"] == "val" and res["tuning_note"] is None
  chosen = res["curve"][[0.0, 0.5, 1.0].index(res["tau"])]
  assert res["final"]["top1_acc"] == pytest.approx(chosen["test_top1_acc"])
  assert res["stage1_checkpoint"]["which"] == "best"
  if method == "logit_adjust":  # tau 0 leaves stage 1's logits: its best epoch's accuracy.
    with open(os.path.join(stage1, "results.json")) as f:
      stage1_best = json.load(f)["best"]
    assert res["tau_0"]["top1_acc"] == pytest.approx(stage1_best["top1_acc"])
  for name in (decouple.CURVE_PLOT_FILE, "per_class_accuracy.png", "results.json"):
    assert os.path.exists(os.path.join(workdir, method, name))
  assert pipeline.run(_config(methods=(method,), stage1_workdir=stage1, taus=(0.0, 0.5, 1.0)),
                      workdir)["final"] == out["final"]  # Finished: read back.


def test_tuning_on_test_is_flagged(stage1, tmp_path):
  c = _config(methods=("logit_adjust",), stage1_workdir=stage1, taus=(0.0, 1.0),
              tune_on="test")
  res = pipeline.run(c, str(tmp_path))["stages"]["logit_adjust"]
  assert "optimistic" in res["tuning_note"]
  assert res["final"]["top1_acc"] == max(row["test_top1_acc"] for row in res["curve"])


def test_pipeline_trains_stage1_then_decouples(tmp_path):
  out = pipeline.run(_config(methods=("tau_norm",), taus=(0.0, 1.0)), str(tmp_path))
  assert set(out["stages"]) == {"stage1", "tau_norm"}
  assert (tmp_path / "stage1" / "results.json").exists()
  assert out["final"] == out["stages"]["tau_norm"]["final"]


@pytest.mark.parametrize("fields, message", [
    ({"decouple.methods": ("crt", "svm")}, "decouple.methods='svm' is unknown"),
    ({"decouple.methods": ("crt", "crt")}, "decouple.methods repeats crt"),
    ({"decouple.methods": ("tau_norm",), "dataset.val_per_class": 0},
     "decouple.tune_on='val' needs a validation split"),
    ({"decouple.methods": ("lws",), "model.head": "cosine"}, "LWS and tau-norm act on a linear"),
    ({"decouple.methods": ("logit_adjust",), "decouple.taus": ()}, "decouple.taus is empty"),
    ({"decouple.methods": ("crt",), "grid.methods": ("ce",)}, "grid.methods and decouple"),
    ({"model.head": "lws"}, "model.head='lws' scales a trained classifier"),
    ({"train.samples_per_class": 0}, "train.samples_per_class=0 must be at least 1"),
])
def test_bad_decouple_configs_fail_naming_the_field(fields, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(override(_config(), **fields), check_data=False)


def test_missing_stage1_workdir_fails_before_work(tmp_path):
  c = _config(methods=("crt",), stage1_workdir=str(tmp_path / "nothing"))
  with pytest.raises(Exception, match="decouple.stage1_workdir"):
    pipeline.run(c, str(tmp_path / "out"))


def test_classifier_dir_is_a_pipelines_final_stage(tmp_path):
  plain = tmp_path / "plain"
  os.makedirs(workdir_lib.checkpoint_dir(str(plain)))
  assert decouple.classifier_dir(str(plain)) == str(plain)
  ssp = tmp_path / "ssp"
  os.makedirs(workdir_lib.checkpoint_dir(str(ssp / "final")))
  os.makedirs(workdir_lib.checkpoint_dir(str(ssp / "pretrain")))
  assert decouple.classifier_dir(str(ssp)) == str(ssp / "final")
