"""The one training driver: many steps per dispatch, host reads per window, resume, divergence,
reduced precision, and the supervised and contrastive stages running through it."""

import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import killed_at_epoch, read_jsonl, tiny_config

from lt_jax import inputs, parallel, pipeline
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.data import prepare
from lt_jax.pretrain import contrastive_stage
from lt_jax.train import driver


def saved_state(workdir):
  state, _ = Checkpoints(workdir_lib.checkpoint_dir(str(workdir))).restore()
  return state


def assert_trees_equal(a, b):
  flat_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
  flat_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


# --- a toy step: the driver's bookkeeping against hand-computed values ------------------------


@flax.struct.dataclass
class Toy:
  step: jax.Array
  total: jax.Array


def toy_step(state, data):
  """total += data[step]; the loss is the new total, so window means are easy to compute."""
  total = state.total + data[state.step % data.shape[0]]
  return state.replace(step=state.step + 1, total=total), {"loss": total, "lr": state.step * 1.0}


def toy_run(workdir, data, *, steps_per_call=3, log_every=4, epochs=3, spe=5):
  sharding = parallel.replicated(parallel.make_mesh())
  state = Toy(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))
  plan = driver.Plan(num_epochs=epochs, steps_per_epoch=spe, batch_size=2,
                     steps_per_call=steps_per_call, log_every_steps=log_every,
                     checkpoint_every_epochs=1)
  return driver.train(str(workdir), state, toy_step, jnp.asarray(data, jnp.float32), plan,
                      state_sharding=sharding, log=lambda line: None)


def test_window_and_epoch_means_match_a_hand_computation(tmp_path):
  data = np.arange(1, 16, dtype=np.float32)  # Step s adds s + 1: totals 1, 3, 6, 10, ...
  out = toy_run(tmp_path, data)
  totals = np.cumsum(data)
  assert int(out.state.step) == 15 and float(out.state.total) == totals[-1]
  for epoch, record in enumerate(out.meta["history"]):
    np.testing.assert_allclose(record["train/loss"], totals[5 * epoch:5 * epoch + 5].mean())
    assert record["train/lr"] == 5 * epoch + 4  # The last step's value, not a mean.
  logged = read_jsonl(tmp_path / "metrics.jsonl")
  windows = {r["step"]: r["train_step/loss"] for r in logged if "train_step/loss" in r}
  # Log boundaries at steps 4, 8, 12; each window restarts at its epoch's first step.
  assert sorted(windows) == [4, 8, 12]
  np.testing.assert_allclose(windows[4], totals[0:4].mean())
  np.testing.assert_allclose(windows[8], totals[5:8].mean())  # Steps 5-7 of epoch 2.
  np.testing.assert_allclose(windows[12], totals[10:12].mean())


def test_host_reads_the_device_once_per_window(tmp_path, monkeypatch):
  reads = []
  real = jax.device_get
  monkeypatch.setattr(driver.jax, "device_get", lambda x: reads.append(1) or real(x))
  toy_run(tmp_path / "a", np.ones(5), steps_per_call=2, log_every=1000, epochs=2)
  assert len(reads) == 2  # One read per epoch: the window that the epoch's end closes.
  reads.clear()
  toy_run(tmp_path / "b", np.ones(5), steps_per_call=1, log_every=2, epochs=2)
  assert len(reads) == 6  # Windows end at steps 2, 4, 5 | 6, 8, 10.


def test_divergence_names_the_step_epoch_and_checkpoint(tmp_path):
  data = np.ones(15, np.float32)
  data[7] = np.nan  # Step 7, in the second epoch of 5 steps.
  with pytest.raises(FloatingPointError, match=r"at step 7 \(epoch 2\).*step 5 in"):
    toy_run(tmp_path, data)


# --- the supervised stage -------------------------------------------------------------------


def test_steps_per_call_gives_bit_identical_parameters(tmp_path):
  """Every k >= 2 runs the same compiled loop, so results do not depend on the chunking (the
  chunks here are 2 or 5 steps, cut at log boundaries and epoch ends into other sizes too).
  One plain step per call (k = 1, the CPU default) is compiled without the loop: XLA may round
  differently there, so it agrees to float32 rounding only."""
  outs = {}
  for k in (1, 2, 5):
    config = tiny_config(train__num_epochs=1, train__steps_per_call=k,
                         train__log_every_steps=6, augment__name="crop_flip",
                         train__rule="resample")
    outs[k] = pipeline.run(config, str(tmp_path / f"k{k}"))
  assert_trees_equal(saved_state(tmp_path / "k2"), saved_state(tmp_path / "k5"))
  assert outs[2]["final"] == outs[5]["final"]
  assert [h["train/loss"] for h in outs[2]["history"]] == \
      [h["train/loss"] for h in outs[5]["history"]]
  plain, looped = saved_state(tmp_path / "k1"), saved_state(tmp_path / "k5")
  for x, y in zip(jax.tree.leaves(plain["params"]), jax.tree.leaves(looped["params"])):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_state(tmp_path):
  config = tiny_config(train__num_epochs=1, model__dtype="bfloat16")
  out = pipeline.run(config, str(tmp_path / "bf16"))
  state = saved_state(tmp_path / "bf16")
  for tree in (state["params"], state["batch_stats"], state["opt_state"]):
    assert {str(np.asarray(x).dtype) for x in jax.tree.leaves(tree)} <= {"float32", "int32"}
  assert np.isfinite(out["history"][-1]["train/loss"])
  assert out["final"]["top1_acc"] > 10.0  # Above chance after one epoch.

  # The same parameters computed in float32 give different (but close) logits: bf16 is used.
  from lt_jax.models import create_model
  data = prepare.prepare(config.dataset)
  x = jnp.asarray(data.test.images[:64], jnp.float32) / 255.0
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  logits = {d: create_model("resnet_tiny", num_classes=10, dtype=d).apply(
      variables, x, train=False)[0] for d in ("float32", "bfloat16")}
  assert logits["bfloat16"].dtype == jnp.float32  # The head and the loss stay float32.
  assert not np.array_equal(logits["float32"], logits["bfloat16"])
  np.testing.assert_allclose(logits["float32"], logits["bfloat16"], atol=0.25)


# --- the contrastive stage ------------------------------------------------------------------


def moco_config(**overrides):
  c = tiny_config(train__num_epochs=2, **overrides)
  c.pretrain.method = "moco"
  c.pretrain.queue_size = 64
  c.pretrain.proj_hidden = 16
  c.pretrain.proj_dim = 8
  return c


def test_contrastive_stage_resumes_to_identical_parameters(tmp_path):
  config = moco_config()
  data = inputs.DeviceInput(prepare.prepare(config.dataset))
  whole = contrastive_stage.pretrain_and_evaluate(config, str(tmp_path / "whole"), data)

  killed_at_epoch(
      lambda: contrastive_stage.pretrain_and_evaluate(config, str(tmp_path / "cut"), data), 2)
  assert not os.path.exists(tmp_path / "cut" / workdir_lib.RESULTS_FILE)
  resumed = contrastive_stage.pretrain_and_evaluate(config, str(tmp_path / "cut"), data)

  assert_trees_equal(saved_state(tmp_path / "whole"), saved_state(tmp_path / "cut"))
  assert [h["epoch"] for h in resumed["history"]] == [1, 2]
  assert resumed["final_loss"] == whole["final_loss"]
  assert np.isfinite(whole["final_loss"]) and whole["train_images_per_s"] > 0
