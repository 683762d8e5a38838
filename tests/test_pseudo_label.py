"""Pseudo-labeling: the frozen base model, batched prediction, selection, files and the report."""

import fcntl
import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import fake_devices_env, tiny_config

from lt_jax import pipeline, predict, semi
from lt_jax import pseudo_label as pl
from lt_jax.data import augment, prepare
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import create_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A real, finished one-epoch base run on digits-LT, trained once per session.

  Under pytest-xdist every worker's base temp shares a parent: the first worker to take the
  lock trains, the others find the finished run (train_and_evaluate does not retrain it).
  """
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent
  path = shared / "pseudo_label_base"
  with open(shared / "pseudo_label_base.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    pipeline.run(tiny_config(train__num_epochs=1), str(path))
  return path


@pytest.fixture(scope="module")
def data():
  return prepare.prepare(tiny_config().dataset)


@functools.partial(jax.jit, static_argnames=("model", "mean", "std", "scale"))
def _direct(variables, images, *, model, mean, std, scale):
  logits, _ = model.apply(variables, augment.normalize(images, mean, std), train=False)
  probs = jax.nn.softmax(scale * logits, axis=-1)
  return jnp.argmax(logits, -1), jnp.max(probs, -1)


def direct(frozen, images, mean, std, scale=1.0):
  """The whole pool in one model.apply, argmax and max softmax: what predict must match."""
  out = _direct(frozen.variables, images, model=frozen.model, mean=tuple(mean),
                std=tuple(std), scale=scale)
  return tuple(np.asarray(x) for x in out)


@pytest.fixture(scope="module")
def pool(workdir, data):
  """100 test images and their direct labels (eval mode: each image's output is its own)."""
  frozen = predict.load_frozen(str(workdir))
  images = data.test.images[:100]
  return frozen, images, direct(frozen, images, data.mean, data.std)


# --- load_frozen ----------------------------------------------------------------------------


def test_load_frozen_from_workdir_and_checkpoint_folder(workdir):
  from_workdir = predict.load_frozen(str(workdir))
  from_folder = predict.load_frozen(str(workdir / "checkpoints" / "last"))
  best = predict.load_frozen(str(workdir), which="best")
  assert from_workdir.num_classes == 10 and from_workdir.config.model.name == "resnet_tiny"
  assert from_workdir.config.loss.ldam_s == 30.0
  for other in (from_folder, best):  # One epoch: the best checkpoint is the last one.
    assert other.model == from_workdir.model
    flat_a, tree_a = jax.tree.flatten(from_workdir.variables)
    flat_b, tree_b = jax.tree.flatten(other.variables)
    assert tree_a == tree_b
    for a, b in zip(flat_a, flat_b):
      np.testing.assert_array_equal(a, b)
  assert set(from_workdir.variables) == {"params", "batch_stats"}


def test_load_frozen_refuses_empty_and_half_made_folders(tmp_path):
  with pytest.raises(DataError, match="no finished base model.*semi.base_workdir"):
    predict.load_frozen(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(tiny_config().to_dict()))
  with pytest.raises(DataError, match="checkpoints/last"):
    predict.load_frozen(str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # Looking does not create folders.
  with pytest.raises(DataError, match="no finished base model"):
    predict.load_frozen(str(tmp_path / "checkpoints" / "last"))


# --- predict --------------------------------------------------------------------------------


@pytest.mark.parametrize("pool_size", [1, 37, 100])
def test_predict_equals_one_direct_application(pool, data, pool_size):
  frozen, images, (want_pred, want_conf) = pool
  pred, conf = pl.predict(frozen, images[:pool_size], data.mean, data.std, batch_size=32)
  assert pred.shape == conf.shape == (pool_size,)
  assert pred.dtype == np.int64 and conf.dtype == np.float32
  np.testing.assert_array_equal(pred, want_pred[:pool_size])
  np.testing.assert_allclose(conf, want_conf[:pool_size], rtol=1e-5, atol=1e-6)
  assert len(set(want_pred.tolist())) > 1  # A real model, not a constant.


def test_predict_scales_cosine_heads_by_ldam_s(pool, data):
  trained = pool[0]
  model = create_model("resnet_tiny", num_classes=10, head="cosine")
  params = dict(trained.variables["params"], head={
      "kernel": trained.variables["params"]["head"]["kernel"]})  # No bias in a cosine head.
  config = ml_collections.ConfigDict(tiny_config(model__head="cosine").to_dict())
  frozen = predict.FrozenModel(model=model, num_classes=10, config=config, variables={
      "params": params, "batch_stats": trained.variables["batch_stats"]})
  assert pl.logit_scale(frozen) == 30.0
  images = data.test.images[:40]
  pred, conf = pl.predict(frozen, images, data.mean, data.std, batch_size=32)
  want_pred, want_conf = direct(frozen, images, data.mean, data.std, scale=30.0)
  np.testing.assert_array_equal(pred, want_pred)
  np.testing.assert_allclose(conf, want_conf, rtol=1e-5, atol=1e-6)
  assert conf.min() > 1 / 10  # Unscaled cosines would give a near-flat 1/C everywhere.


def test_predict_empty_pool_and_bad_inputs(workdir, data):
  frozen = predict.load_frozen(str(workdir))
  pred, conf = pl.predict(frozen, data.test.images[:0], data.mean, data.std)
  assert pred.shape == conf.shape == (0,)
  with pytest.raises(DataError, match="uint8"):
    pl.predict(frozen, data.test.images[:4].astype(np.float32), data.mean, data.std)
  with pytest.raises(ConfigError, match="semi.label_batch_size"):
    pl.predict(frozen, data.test.images[:4], data.mean, data.std, batch_size=0)


def test_predict_says_it_compiles_then_reports_about_every_tenth(workdir, data):
  frozen = predict.load_frozen(str(workdir))
  images, lines = data.test.images[:100], []
  pred, conf = pl.predict(frozen, images, data.mean, data.std, batch_size=8, log=lines.append)
  want_pred, want_conf = pl.predict(frozen, images, data.mean, data.std, batch_size=8)
  np.testing.assert_array_equal(pred, want_pred)  # Logging changes nothing.
  np.testing.assert_array_equal(conf, want_conf)
  assert lines[0] == "forward pass over 100 images, 8 a batch (the first batch compiles) ..."
  done = [int(line.split()[0]) for line in lines[1:]]
  assert 5 <= len(done) <= 10 and all(0 < d < 100 for d in done)
  assert all(b - a >= 10 for a, b in zip(done, done[1:]))  # At most one per tenth.


TWO_DEVICES = textwrap.dedent("""
  import numpy as np, jax
  from lt_jax import predict, pseudo_label as pl
  assert jax.device_count() == 2, jax.devices()
  case = np.load({case!r})
  frozen = predict.load_frozen({workdir!r})
  pred, conf = pl.predict(frozen, case["images"], case["mean"], case["std"], batch_size=32)
  np.testing.assert_array_equal(pred, case["pred"])
  np.testing.assert_allclose(conf, case["conf"], rtol=1e-5, atol=1e-6)
  # 15 does not split over 2 devices: each batch is padded to 16, the padding dropped.
  pred, conf = pl.predict(frozen, case["images"], case["mean"], case["std"], batch_size=15)
  np.testing.assert_array_equal(pred, case["pred"])
  np.testing.assert_allclose(conf, case["conf"], rtol=1e-5, atol=1e-6)
""")


def test_predict_over_two_devices(workdir, pool, data, tmp_path):
  """The same labels with the batch split over two (fake CPU) devices, whether or not the
  batch divides them."""
  _, images, (want_pred, want_conf) = pool
  case = tmp_path / "case.npz"
  np.savez(case, images=images[:37], mean=data.mean, std=data.std, pred=want_pred[:37],
           conf=want_conf[:37])
  code = TWO_DEVICES.format(case=str(case), workdir=str(workdir))
  proc = subprocess.run([sys.executable, "-c", code], env=fake_devices_env(2),
                        capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]


# --- select ---------------------------------------------------------------------------------

PRED = np.array([0, 1, 0, 0, 1, 2, 0])
CONF = np.array([0.9, 0.5, 0.7, 0.9, 0.95, 0.3, 0.7], np.float32)


def test_select_without_options_keeps_everything():
  assert pl.select(PRED, CONF, 3).tolist() == [True] * 7


def test_select_threshold_is_inclusive():
  keep = pl.select(PRED, CONF, 3, threshold=0.7)
  assert keep.tolist() == [True, False, True, True, True, False, True]


def test_select_per_class_cap_keeps_most_confident_and_breaks_ties_by_index():
  # Class 0: indices 0 (0.9), 3 (0.9), 2 (0.7), 6 (0.7); cap 3 keeps 0, 3 and 2 (2 < 6).
  keep = pl.select(PRED, CONF, 3, per_class_max=3)
  assert np.flatnonzero(keep).tolist() == [0, 1, 2, 3, 4, 5]
  keep = pl.select(PRED, CONF, 3, per_class_max=1)
  assert np.flatnonzero(keep).tolist() == [0, 4, 5]
  assert not pl.select(PRED, CONF, 3, per_class_max=0).any()


def test_select_threshold_then_cap():
  keep = pl.select(PRED, CONF, 3, threshold=0.6, per_class_max=2)
  assert np.flatnonzero(keep).tolist() == [0, 3, 4]  # Class 2's 0.3 is below the threshold.


def test_select_rejects_bad_options():
  with pytest.raises(ConfigError, match="semi.confidence_threshold"):
    pl.select(PRED, CONF, 3, threshold=1.5)
  with pytest.raises(ConfigError, match="semi.per_class_max"):
    pl.select(PRED, CONF, 3, per_class_max=-1)
  with pytest.raises(ValueError, match="outside"):
    pl.select(PRED, CONF, 2)


# --- report ---------------------------------------------------------------------------------


def test_report_against_hand_computed_numbers():
  pred = np.array([0, 0, 1, 1, 2, 0, 2])
  true = np.array([0, 1, 1, 1, 0, 0, 2])
  keep = np.array([True, True, True, False, True, True, False])
  r = pl.report(pred, keep, true, 4)
  # Kept pairs (true, pred): (0,0) (1,0) (1,1) (0,2) (0,0).
  assert r["num_pool"] == 7 and r["num_kept"] == 5
  assert r["distribution"] == [3, 1, 1, 0]
  assert r["accuracy"] == pytest.approx(60.0)
  assert r["confusion"] == [[2, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
  assert r["per_class_accuracy"] == [pytest.approx(200 / 3), 50.0, None, None]
  assert r["per_class_precision"] == [pytest.approx(200 / 3), 100.0, 0.0, None]
  assert r["true_distribution"] == [3, 3, 1, 0]
  assert json.loads(json.dumps(r)) == r


def test_report_without_true_labels_and_plot(tmp_path):
  r = pl.report(np.array([0, 2, 2]), np.array([True, True, False]), None, 3)
  assert r == {"num_pool": 3, "num_kept": 2, "distribution": [1, 0, 1]}
  pl.plot_report(str(tmp_path / "no_truth.png"), r)
  full = pl.report(np.array([0, 2, 2, 1]), np.ones(4, bool), np.array([0, 2, 1, 1]), 3)
  pl.plot_report(str(tmp_path / "pseudo.png"), full, class_counts=[100, 10, 1])
  for name in ("no_truth.png", "pseudo.png"):
    assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
  assert sorted(os.listdir(tmp_path)) == ["no_truth.png", "pseudo.png"]


# --- files ----------------------------------------------------------------------------------


def arrays(n=5, with_truth=True):
  out = {"indices": np.arange(10, 10 + n), "pred": np.arange(n) % 3,
         "confidence": np.linspace(0.2, 1.0, n), "keep": np.arange(n) % 2 == 0}
  if with_truth:
    out["true_labels"] = np.arange(n) % 2
  return out


def test_write_then_read_round_trip(tmp_path):
  path = str(tmp_path / "pseudo_labels.npz")
  a = arrays()
  semi.write_pseudo_labels(path, **a)
  got = semi.read_pseudo_labels(path)
  assert set(got) == {"indices", "pseudo_labels", "confidences", "keep", "true_labels"}
  np.testing.assert_array_equal(got["indices"], a["indices"])
  np.testing.assert_array_equal(got["pseudo_labels"], a["pred"])
  np.testing.assert_allclose(got["confidences"], a["confidence"].astype(np.float32))
  assert got["keep"].dtype == bool and got["confidences"].dtype == np.float32
  np.testing.assert_array_equal(got["true_labels"], a["true_labels"])
  assert os.listdir(tmp_path) == ["pseudo_labels.npz"]


def test_write_without_npz_suffix_and_without_truth(tmp_path):
  path = str(tmp_path / "labels.bin")
  semi.write_pseudo_labels(path, **arrays(with_truth=False))
  assert "true_labels" not in semi.read_pseudo_labels(path)
  assert os.listdir(tmp_path) == ["labels.bin"]


def test_refuses_to_overwrite_unless_asked(tmp_path):
  path = str(tmp_path / "p.npz")
  semi.write_pseudo_labels(path, **arrays(4))
  with pytest.raises(FileExistsError, match="overwrite=True"):
    semi.write_pseudo_labels(path, **arrays(6))
  assert len(semi.read_pseudo_labels(path)["indices"]) == 4
  semi.write_pseudo_labels(path, overwrite=True, **arrays(6))
  assert len(semi.read_pseudo_labels(path)["indices"]) == 6


def test_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
  path = str(tmp_path / "p.npz")
  semi.write_pseudo_labels(path, **arrays(4))

  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(np, "savez", broken)
  with pytest.raises(OSError, match="disk full"):
    semi.write_pseudo_labels(str(tmp_path / "new.npz"), **arrays())
  with pytest.raises(OSError, match="disk full"):
    semi.write_pseudo_labels(path, overwrite=True, **arrays())
  assert os.listdir(tmp_path) == ["p.npz"]
  monkeypatch.undo()
  assert len(semi.read_pseudo_labels(path)["indices"]) == 4  # The old file is intact.


def test_write_rejects_mismatched_lengths(tmp_path):
  a = arrays()
  a["keep"] = a["keep"][:3]
  with pytest.raises(ValueError, match="one length"):
    semi.write_pseudo_labels(str(tmp_path / "p.npz"), **a)
  assert os.listdir(tmp_path) == []


def test_read_validates_keys_and_presence(tmp_path):
  path = tmp_path / "bad.npz"
  np.savez(path, indices=np.arange(3), pseudo_labels=np.arange(3), keep=np.ones(3, bool))
  with pytest.raises(DataError, match="'confidences'"):
    semi.read_pseudo_labels(str(path))
  with pytest.raises(DataError, match="run the pseudo-label stage"):
    semi.read_pseudo_labels(str(tmp_path / "missing.npz"))
  (tmp_path / "junk.npz").write_text("not a zip")
  with pytest.raises(DataError, match="not a readable .npz"):
    semi.read_pseudo_labels(str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("label, key", [(10, "pseudo_labels"), (-1, "pseudo_labels"),
                                        (99, "true_labels")])
def test_read_refuses_labels_outside_the_classes(tmp_path, label, key):
  """A pseudo-label edited to 99 trained a model of 100 classes; -1 gave a traceback."""
  path = str(tmp_path / "pseudo_labels.npz")
  arrays = {"pseudo_labels": np.array([0, 3, 9, 2]), "true_labels": np.array([0, 3, 9, 1])}
  arrays[key] = arrays[key].copy()
  arrays[key][2] = label
  semi.write_pseudo_labels(path, indices=np.arange(4), pred=arrays["pseudo_labels"],
                         confidence=np.full(4, 0.5), keep=np.ones(4, bool),
                         true_labels=arrays["true_labels"])
  assert len(semi.read_pseudo_labels(path)["indices"]) == 4  # Without classes: not checked.
  with pytest.raises(DataError, match=rf"'{key}' holds 1 labels outside 0..9 \(row 2: {label}\)"
                     rf".*Delete {tmp_path} and run the same command again"):
    semi.read_pseudo_labels(path, num_classes=10)
  arrays[key][2] = 9
  semi.write_pseudo_labels(path, indices=np.arange(4), pred=arrays["pseudo_labels"],
                         confidence=np.full(4, 0.5), keep=np.ones(4, bool),
                         true_labels=arrays["true_labels"], overwrite=True)
  assert semi.read_pseudo_labels(path, num_classes=10)["pseudo_labels"].max() == 9
