"""MoCo v2 pre-training on ImageNet-LT-format lists and the SSP pipeline on it: pretrain ->
final through run.py's pipeline, the host's crops, the device's half of each
view, a pre-training stopped mid-epoch resuming bit-identically, and what stays refused.

One uninterrupted SSP run (ResNet-10's layout at test widths on 32 px JPEGs) serves the
pipeline checks and the resume comparison; it runs once per test session, whichever
pytest-xdist worker asks first.
"""

import functools
import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_tree import write_tree
from test_driver import assert_trees_equal
from test_list_training import BATCH, EVAL_COUNTS, TRAIN_COUNTS, list_config, once_per_session

from lt_jax import classify, inputs, parallel, pipeline
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.config import get_base_config, override
from lt_jax.data import augment as augment_lib
from lt_jax.data import image_lists, image_pipeline, samplers
from lt_jax.errors import ConfigError
from lt_jax.pretrain import augment as views_lib
from lt_jax.pretrain import contrastive, contrastive_stage
from lt_jax.train import preemption

QUEUE = 64  # A multiple of the batch (8).


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return once_per_session(tmp_path_factory, "imagenet_lt_pretrain_tree", lambda folder:
                          write_tree(folder, {"train": TRAIN_COUNTS, **EVAL_COUNTS}))


def ssp_config(tree, **fields):
  return list_config(tree, **{"pretrain.method": "moco", "pretrain.queue_size": QUEUE,
                              # No probe, as the list configs (the reference trains none;
                              # the frozen-backbone path is the cRT test's).
                              "pretrain.num_epochs": 1, "pretrain.probe_epochs": 0,
                              "train.num_epochs": 1, **fields})


def saved(workdir):
  return Checkpoints(workdir_lib.checkpoint_dir(str(workdir))).restore()


@pytest.fixture(scope="module")
def ssp(tree, tmp_path_factory):
  """The SSP pipeline's workdir, its results, and the backbone each stage started from
  (recorded as the stage's initializer returns it, before any step)."""
  def run(folder):
    with pytest.MonkeyPatch.context() as monkeypatch:
      calls = []
      monkeypatch.setattr(classify, "backbone_initializer", _recorded_initializer(
          classify.backbone_initializer, calls))
      pipeline.run(ssp_config(tree), str(folder / "run"))
    (folder / "starts.pkl").write_bytes(pickle.dumps(calls))

  folder = once_per_session(tmp_path_factory, "list_ssp_run", run)
  workdir = folder / "run"
  starts = pickle.loads((folder / "starts.pkl").read_bytes())
  return workdir, json.loads((workdir / workdir_lib.RESULTS_FILE).read_text()), starts


def _recorded_initializer(make, calls):
  """classify.backbone_initializer whose initialize records (init_from, the backbone it
  returns) for each stage."""
  def wrapped(config, replicated):
    initialize = make(config, replicated)
    if initialize is None:
      return None

    def recording(state):
      state = initialize(state)
      with jax.transfer_guard("allow"):
        calls.append({"init_from": config.model.init_from,
                      "freeze": bool(config.model.freeze_backbone), "step": int(state.step),
                      "params": jax.device_get(state.params["backbone"]),
                      "batch_stats": jax.device_get(state.batch_stats["backbone"])})
      return state
    return recording
  return wrapped


def test_ssp_pipeline_trains_every_stage_from_the_pretrained_query_encoder(ssp):
  workdir, out, starts = ssp
  assert set(out["stages"]) == {"pretrain", "final"}
  for stage in ("pretrain", "final"):
    assert (workdir / stage / workdir_lib.RESULTS_FILE).exists()
  pre = out["stages"]["pretrain"]
  assert pre["method"] == "moco" and pre["epochs"] == 1 and pre["batch_size"] == BATCH
  assert np.isfinite(pre["final_loss"]) and [h["epoch"] for h in pre["history"]] == [1]
  assert out["stages"]["final"]["final"]["per_class_count"][:4] == list(EVAL_COUNTS["test"])
  assert out["final"] == out["stages"]["final"]["final"]

  pretrained, _ = saved(workdir / "pretrain")
  backbone, stats = pretrained["params_q"]["backbone"], pretrained["batch_stats_q"]["backbone"]
  # The ImageNet-style ResNet-10 layout (7x7 stem, four stages; resnet10_tiny's widths 8 to
  # 64) with an MLP head as wide as its features, and the queue.
  assert backbone["conv1"]["kernel"].shape == (7, 7, 3, 8) and "layer4_0" in backbone
  assert pretrained["params_q"]["projector"]["fc1"]["kernel"].shape == (64, 64)
  # One epoch of int(30 / 8) = 3 batches of 8 keys enqueued.
  assert pretrained["queue"].shape == (QUEUE, 128) and int(pretrained["queue_ptr"]) == 24 % QUEUE

  # The final stage started (step 0) from the query encoder's backbone, statistics too.
  assert [(s["init_from"], s["freeze"], s["step"]) for s in starts] == [
      (str(workdir / "pretrain"), False, 0)]
  for start in starts:
    assert_trees_equal(start["params"], backbone)
    assert_trees_equal(start["batch_stats"], stats)
  # ... and trained it.
  final, _ = saved(workdir / "final")
  assert not np.array_equal(final["params"]["backbone"]["conv1"]["kernel"],
                            backbone["conv1"]["kernel"])


def test_rotation_ssp_runs_on_a_list_dataset_from_the_rotation_backbone(tree, tmp_path):
  """The paper's CIFAR pretext task on host-decoded images: rotated batches to train, every
  evaluation image under all four rotations, then the classifier from that backbone."""
  calls = []
  with pytest.MonkeyPatch.context() as monkeypatch:
    monkeypatch.setattr(classify, "backbone_initializer", _recorded_initializer(
        classify.backbone_initializer, calls))
    out = pipeline.run(ssp_config(tree, **{"pretrain.method": "rotation"}), str(tmp_path))
  pre = out["stages"]["pretrain"]
  n_train, n_test, n_val = sum(TRAIN_COUNTS), sum(EVAL_COUNTS["test"]), sum(EVAL_COUNTS["val"])
  assert pre["dataset"] | {"name": None} == {
      "name": None, "num_classes": 4, "train_size": n_train, "val_size": 4 * n_val,
      "test_size": 4 * n_test}
  assert pre["class_counts"] == [n_train] * 4
  assert pre["final"]["per_class_count"] == [n_test] * 4  # Each test image once per rotation.
  rotated, _ = saved(tmp_path / "pretrain")
  assert rotated["params"]["head"]["kernel"].shape[-1] == 4
  assert [(c["init_from"], c["step"]) for c in calls] == [(str(tmp_path / "pretrain"), 0)]
  assert_trees_equal(calls[0]["params"], rotated["params"]["backbone"])
  assert out["stages"]["final"]["final"]["per_class_count"][:4] == list(EVAL_COUNTS["test"])


def test_a_pretraining_stopped_mid_epoch_resumes_to_the_same_encoders_and_queue(
    tree, ssp, tmp_path, monkeypatch):
  whole_dir, whole_out, _ = ssp
  polls = []

  def agreed():  # Polled at the window end inside the epoch (step 2), then at its end.
    polls.append(1)
    return "SIGTERM" if len(polls) == 1 else None

  monkeypatch.setattr(preemption, "agreed", agreed)
  config = ssp_config(tree)
  with pytest.raises(preemption.Stopped) as stopped:
    contrastive_stage.pretrain_and_evaluate(config, str(tmp_path), inputs.HostInput.of(config))
  assert stopped.value.step == 2  # Mid-epoch: the epoch has 3 steps.
  cut, meta = saved(tmp_path)
  assert meta["feed"]["position"] == 2 and int(cut["queue_ptr"]) == 16
  assert "TwoCrops" in meta["feed"]["stream"]["transform"]
  resumed = contrastive_stage.pretrain_and_evaluate(config, str(tmp_path),
                                                    inputs.HostInput.of(config))
  whole, _ = saved(whole_dir / "pretrain")
  resumed_state, _ = saved(tmp_path)
  assert set(whole) == set(resumed_state)
  for key in whole:  # Step, both encoders and statistics, optimiser, queue, pointer, key.
    assert_trees_equal(whole[key], resumed_state[key])
  assert resumed["history"] == whole_out["stages"]["pretrain"]["history"]


def test_host_crops_are_a_pure_function_of_seed_and_position(tree):
  train = image_lists.read_list(str(tree / "ImageNet_LT_train.txt"), str(tree), 1000)
  crops = image_pipeline.TwoCrops(size=32, scale=(0.2, 1.0))
  batches = functools.partial(image_pipeline.train_batches, train, batch_size=BATCH,
                              num_epochs=1, seed=3, augment=crops)
  whole, late = list(batches()), list(batches(start_step=2))
  assert len(whole) == 3 and len(late) == 1  # int(30 / 8) steps an epoch.
  stream = samplers.epoch_order(train.labels, "instance", 3, 0)
  for step, batch in enumerate(whole):
    assert set(batch) == {"view_a", "view_b", "label"}
    assert batch["view_a"].shape == (BATCH, 32, 32, 3) and batch["view_a"].dtype == np.uint8
    for row in range(BATCH):
      position = step * BATCH + row
      index = stream[position]
      assert batch["label"][row] == train.labels[index]
      want = crops(image_lists.read_image(train, index),
                   np.random.default_rng([3, 3, position]))
      np.testing.assert_array_equal(batch["view_a"][row], want["view_a"])
      np.testing.assert_array_equal(batch["view_b"][row], want["view_b"])
    assert not np.array_equal(batch["view_a"], batch["view_b"])  # Two different crops.
  for got, want in zip(late, whole[2:]):  # Started at step 2: the same crops.
    for name in ("view_a", "view_b", "label"):
      np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("method", ["moco", "simclr"])
def test_the_device_half_of_each_view_is_the_view_recipe_after_an_identity_crop(method):
  """The host-fed views (paired_views, crop left out) against the recipe applied to each
  image alone with the crop made the whole image (scale 1: the box is the image, the resize
  an identity), under the keys two_views gives image i's two views."""
  config = get_base_config()
  config.pretrain.method = method
  rng = np.random.default_rng(0)
  a, b = (jnp.asarray(rng.uniform(size=(4, 16, 16, 3)), jnp.float32) for _ in range(2))
  key = jax.random.key(7)
  got_a, got_b = jax.jit(lambda k, x, y: views_lib.paired_views(
      k, x, y, contrastive_stage.view_fn(config, crop=False)))(key, a, b)
  recipe = {"moco": views_lib.moco_v2_view, "simclr": views_lib.simclr_view}[method]
  whole = jax.jit(jax.vmap(functools.partial(recipe, crop_scale=(1.0, 1.0))))
  keys = jax.random.split(key, 8)
  np.testing.assert_allclose(got_a, whole(keys[0::2], a), atol=1e-6)
  np.testing.assert_allclose(got_b, whole(keys[1::2], b), atol=1e-6)
  assert not np.allclose(got_a, a)  # Something was drawn.


def test_the_host_fed_step_hands_the_update_the_recipes_views(monkeypatch):
  """make_batch_step on uint8 crops, with the MoCo update replaced by one that hands back the
  (normalised) views it is given, against the recipe applied directly under the keys derived
  from the state's key and step by hand."""
  config = override(get_base_config(), **{"pretrain.method": "moco", "pretrain.batch_size": 4,
                                          "pretrain.bn_groups": 2, "pretrain.queue_size": 8})
  monkeypatch.setattr(contrastive, "moco_train_step",
                      lambda state, a, b, key, **_: (state, {"loss": a, "accuracy": b}))
  batch_sharding = parallel.batch_sharded(parallel.make_mesh())
  mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
  step = contrastive_stage.make_batch_step(config, None, None, lambda s: 0.0, mean, std,
                                           batch_sharding)
  rng = np.random.default_rng(1)
  crops = {k: rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8) for k in ("view_a", "view_b")}
  state = contrastive.SimclrState(step=jnp.int32(3), params={}, batch_stats={}, opt_state={},
                                  rng=jax.random.key_data(jax.random.key(5)))
  _, got = jax.jit(step)(state, {k: parallel.put(v, batch_sharding) for k, v in crops.items()})

  step_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 1), 3)
  keys = jax.random.split(jax.random.split(step_key)[0], 8)  # The view key's 2B keys.
  whole = jax.jit(jax.vmap(functools.partial(views_lib.moco_v2_view, crop_scale=(1.0, 1.0))))
  for name, field, rows in (("view_a", "loss", slice(0, None, 2)),
                            ("view_b", "accuracy", slice(1, None, 2))):
    want = augment_lib.standardize(whole(keys[rows], jnp.asarray(crops[name]) / 255.0), mean,
                                   std)
    np.testing.assert_allclose(got[field], want, atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    ({"pretrain.queue_size": 60},
     r"pretrain.queue_size=60 must be a positive multiple of the global batch size 8"),
    ({"pretrain.bn_groups": 3}, r"pretrain.bn_groups=3 must be a positive divisor"),
    ({"pretrain.batch_size": 64}, r"pretrain.batch_size=64 is larger than the training list"),
])
def test_bad_pretraining_settings_on_a_list_dataset_are_named(tree, tmp_path, fields, message):
  with pytest.raises(ConfigError, match=message):
    pipeline.run(ssp_config(tree, **fields), str(tmp_path))
  assert not (tmp_path / "pretrain" / "checkpoints").exists()  # Nothing trained.
