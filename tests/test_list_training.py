"""Training on ImageNet-LT-format lists through run.py's pipeline: the host feed, the batch-fed
step, host-fed evaluation, results.json, a run stopped mid-epoch resuming bit-identically,
cRT / LWS on its frozen backbone and tau-norm / logit adjustment of its classifier.

One uninterrupted ResNet-10 run serves the results checks, the resume comparison and the
decoupled stages: it trains once per test session, whichever pytest-xdist worker asks first
(the others wait for it), and the runs share their compiled programs (same shapes).
"""

import dataclasses
import fcntl
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jpeg_tree import write_tree
from test_driver import assert_trees_equal

from lt_jax import inputs, parallel, pipeline, preflight
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.config import get_base_config
from lt_jax.data import augment as augment_lib
from lt_jax.data import datasets, image_lists, image_pipeline, samplers
from lt_jax.errors import ConfigError, DataError
from lt_jax.models import create_model
from lt_jax.train import feed as feed_lib
from lt_jax.train import preemption
from lt_jax.train import step as step_lib

# Training images per class: one Medium-shot class (20: the boundary, 20..100) and three
# Few-shot ones (< 20).
TRAIN_COUNTS = (20, 6, 3, 1)
EVAL_COUNTS = {"val": (1, 1, 1, 1), "test": (2, 2, 2, 1)}
BATCH, EPOCHS = 8, 2
STEPS_PER_EPOCH = sum(TRAIN_COUNTS) // BATCH  # 30 images: int(30 / 8) = 3 steps, as the reference


def once_per_session(tmp_path_factory, name: str, build):
  """A folder that `build(folder)` fills once per test session: the first worker to get here
  builds it under a file lock, the others wait and reuse it."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # Shared by every worker of the session.
  folder = root / name
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (folder / ".complete").exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      build(folder)
      (folder / ".complete").touch()
  return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return once_per_session(tmp_path_factory, "imagenet_lt_tree", lambda folder: write_tree(
      folder, {"train": TRAIN_COUNTS, **EVAL_COUNTS}))


def list_config(tree, **fields):
  c = get_base_config()
  c.dataset.name = "imagenet_lt"
  c.dataset.lists_dir = c.dataset.data_dir = str(tree)
  c.dataset.image_size, c.dataset.resize_size = 32, 36
  c.model.name = "resnet10_tiny"  # The ImageNet-style path at test speed.
  c.train.batch_size = c.train.eval_batch_size = BATCH
  c.train.num_epochs = EPOCHS
  c.train.log_every_steps = 2
  c.train.checkpoint_every_epochs = 1
  c.train.drw_epoch = 1
  c.optim.lr = 0.02
  c.optim.warmup_epochs = 0
  c.optim.decay_epochs, c.optim.decay_factors = (1,), (0.1,)
  for dotted, value in fields.items():
    section, name = dotted.split(".")
    c[section][name] = value
  return c


class Recorder:
  """Records the labels of every batch the driver takes from a host feed, with its step."""

  def __init__(self, monkeypatch):
    self.seen = []
    real = feed_lib.HostFeed.__next__

    def recording(feed):
      position = feed.position
      batch = real(feed)
      if feed.stream:  # A training feed (evaluation passes describe no stream).
        with jax.transfer_guard("allow"):  # The driver's loop forbids reads; this one is ours.
          self.seen.append((position, np.asarray(batch["label"]).tolist()))
      return batch
    monkeypatch.setattr(feed_lib.HostFeed, "__next__", recording)


@pytest.fixture(scope="module")
def whole(tree, tmp_path_factory):
  """An uninterrupted run (instance order): its workdir, results and the batches it took."""
  def train(folder):
    with pytest.MonkeyPatch.context() as monkeypatch:
      recorder = Recorder(monkeypatch)
      pipeline.run(list_config(tree), str(folder / "run"))
    (folder / "seen.json").write_text(json.dumps(recorder.seen))

  folder = once_per_session(tmp_path_factory, "whole_run", train)
  workdir = folder / "run"
  seen = [tuple(b) for b in json.loads((folder / "seen.json").read_text())]
  return workdir, json.loads((workdir / workdir_lib.RESULTS_FILE).read_text()), seen


def saved_state(workdir, which="last"):
  state, meta = Checkpoints(workdir_lib.checkpoint_dir(str(workdir), which)).restore()
  return state, meta


def test_results_json_counts_groups_and_confusion(tree, whole):
  workdir, saved, seen = whole
  expected_counts = list(TRAIN_COUNTS) + [0] * 996  # 1,000 ImageNet-LT classes.
  assert saved["class_counts"] == expected_counts == saved["group_counts"]
  assert saved["dataset"] == {"name": "imagenet_lt", "num_classes": 1000, "train_size": 30,
                              "val_size": 4, "test_size": 7}
  assert saved["selected_on"] == "val"  # ImageNet-LT has a validation list apart from test.
  final = saved["final"]
  acc = final["per_class_acc"]
  assert final["per_class_count"][:4] == list(EVAL_COUNTS["test"])
  assert all(a is None for a in acc[4:])  # No test image: no accuracy.
  assert final["many_acc"] is None  # No class has more than 100 training images.
  assert final["medium_acc"] == pytest.approx(acc[0])
  assert final["few_acc"] == pytest.approx(np.mean(acc[1:4]))
  assert [h["epoch"] for h in saved["history"]] == [1, 2]
  assert final["top1_acc"] == saved["history"][-1]["test/top1_acc"]
  assert "confusion" not in final  # 1,000 x 1,000: kept in confusion.npz instead.
  confusion = np.load(workdir / inputs.CONFUSION_FILE)
  assert confusion["test"].shape == (1000, 1000) and confusion["test"].sum() == 7
  assert confusion["val"].sum() == 4
  np.testing.assert_allclose(100 * np.trace(confusion["test"]) / 7, final["top1_acc"])
  assert (workdir / "per_class_accuracy.png").read_bytes().startswith(b"\x89PNG")
  # The driver took one batch per step, in order, with the instance order's labels.
  assert [p for p, _ in seen] == list(range(EPOCHS * STEPS_PER_EPOCH))
  train = image_lists.read_list(str(tree / "ImageNet_LT_train.txt"), str(tree), 1000)
  # Each epoch the first int(30 / 8) * 8 = 24 images of its own order.
  order = np.concatenate([samplers.epoch_order(train.labels, "instance", 0, e)[:24]
                          for e in range(EPOCHS)])
  labels = np.concatenate([b for _, b in seen])
  assert np.array_equal(labels, train.labels[order])

  # The host-fed, sharded, masked evaluation against the model applied to each test image.
  labels, logits, _ = applied_to_splits(tree, workdir, "test")["test"]
  expected = np.zeros((1000, 1000), np.int64)
  np.add.at(expected, (labels, np.argmax(logits, -1)), 1)
  np.testing.assert_array_equal(confusion["test"], expected)


def applied_to_splits(tree, workdir, *splits, which="last"):
  """{split: (labels, logits, features)} of the saved model (checkpoints/<which>) applied to
  each centre view of the splits (one forward pass over them all), without the host-fed
  evaluation."""
  state, _ = saved_state(workdir, which)
  model = create_model("resnet10_tiny", num_classes=1000)
  lists = [image_lists.read_list(str(tree / f"ImageNet_LT_{split}.txt"), str(tree), 1000)
           for split in splits]
  views = np.stack([image_pipeline.center_view(image_lists.read_image(images, i), 36, 32)
                    for images in lists for i in range(len(images))])
  spec = datasets.get("imagenet_lt")
  logits, features = model.apply(
      {"params": state["params"], "batch_stats": state["batch_stats"]},
      augment_lib.normalize(jnp.asarray(views), spec.mean, spec.std), train=False)
  ends = np.cumsum([len(images) for images in lists])
  return {split: (images.labels, np.asarray(logits)[end - len(images):end],
                  np.asarray(features)[end - len(images):end])
          for split, images, end in zip(splits, lists, ends)}


def test_a_run_stopped_mid_epoch_resumes_to_the_same_batches_and_parameters(
    tree, whole, tmp_path, monkeypatch):
  whole_dir, whole_out, whole_seen = whole
  cut = tmp_path / "cut"
  polls = []

  def agreed():  # Polled at window ends inside an epoch (step 2), then at its end (4).
    polls.append(1)
    return "SIGTERM" if len(polls) == 1 else None

  recorder = Recorder(monkeypatch)
  monkeypatch.setattr(preemption, "agreed", agreed)
  with pytest.raises(preemption.Stopped) as stopped:
    pipeline.run(list_config(tree), str(cut))
  assert stopped.value.step == 2  # Mid-epoch: the epoch has 3 steps.
  _, meta = saved_state(cut)
  assert meta["feed"]["position"] == 2 and meta["feed"]["stream"]["order"] == "instance"
  monkeypatch.setattr(preemption, "agreed", lambda: None)
  resumed = pipeline.run(list_config(tree), str(cut))

  assert [p for p, _ in recorder.seen] == list(range(EPOCHS * STEPS_PER_EPOCH))
  assert recorder.seen == whole_seen  # Step 2 onwards too: the uninterrupted run's batches.
  whole_state, _ = saved_state(whole_dir)
  cut_state, _ = saved_state(cut)
  for key in ("step", "params", "batch_stats", "opt_state"):
    assert_trees_equal(whole_state[key], cut_state[key])
  assert resumed["history"] == whole_out["history"]
  assert resumed["final"] == whole_out["final"]


def test_class_aware_reweighted_training_writes_results(tree, tmp_path, monkeypatch):
  # Class-balanced weights need every class in the list: a 4-class ImageNet-LT here.
  four = dataclasses.replace(datasets.get("imagenet_lt"), num_classes=4)
  monkeypatch.setitem(datasets.DATASETS, "imagenet_lt", four)
  recorder = Recorder(monkeypatch)
  config = list_config(tree, **{"train.sampler": "class_aware", "train.rule": "reweight",
                                "train.num_epochs": 1, "train.samples_per_class": 2})
  out = pipeline.run(config, str(tmp_path))
  assert out["class_counts"] == list(TRAIN_COUNTS) and out["dataset"]["num_classes"] == 4
  final = out["final"]
  assert final["medium_acc"] == pytest.approx(final["per_class_acc"][0])
  assert final["few_acc"] == pytest.approx(np.mean(final["per_class_acc"][1:]))
  assert np.isfinite(out["history"][0]["train/loss"])
  # Class-aware batches of 8: four visits of 2 images, each round visiting every class once.
  labels = np.asarray([b for _, b in recorder.seen]).reshape(STEPS_PER_EPOCH, 4, 2)
  assert np.all(labels[..., 0] == labels[..., 1])
  assert all(sorted(visits) == [0, 1, 2, 3] for visits in labels[..., 0].tolist())


def test_the_batch_fed_step_equals_the_device_resident_step():
  """Both steps from one state, the device one sampling rows [B s, B (s + 1)) and the
  batch-fed one given those rows: the same parameters after three steps."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 24).astype(np.int32)
  model = create_model("resnet_tiny", num_classes=10)
  tx = optax.sgd(0.1, momentum=0.9)
  mesh = parallel.make_mesh()
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  objective = lambda logits, y, epoch, where=None: jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, y))
  shared = dict(model=model, tx=tx, objective=objective, mean=(0.5,) * 3, std=(0.25,) * 3,
                steps_per_epoch=3, schedule=lambda step: 0.1, batch_sharding=batch_sharding)
  device_step = jax.jit(lambda s, d: step_lib.train_step(
      s, d, sampler=lambda key, step: step * BATCH + jnp.arange(BATCH),
      augment=augment_lib.make_augment("none", 0), **shared))
  batch_step = jax.jit(lambda s, b: step_lib.train_step_on_batch(s, b, **shared))
  data = step_lib.DeviceData(parallel.put(images, replicated), parallel.put(labels, replicated))
  a = b = step_lib.create_state(model, tx, (8, 8, 3), 0, replicated)
  for s in range(3):
    a, metrics_a = device_step(a, data)
    rows = slice(s * BATCH, (s + 1) * BATCH)
    b, metrics_b = batch_step(b, {"image": parallel.put(images[rows], batch_sharding),
                                  "label": parallel.put(labels[rows], batch_sharding)})
    assert set(metrics_a) == set(metrics_b) == {"loss", "accuracy", "grad_norm", "lr"}
    np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-6)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
  assert int(a.step) == int(b.step) == 3


def test_crt_and_lws_train_on_the_frozen_backbone_of_a_host_fed_stage_1(tree, whole, tmp_path):
  stage1_dir, _, _ = whole
  config = list_config(tree, **{"decouple.methods": ("crt", "lws"),
                                "decouple.stage1_workdir": str(stage1_dir),
                                "decouple.num_epochs": 1, "decouple.batch_size": 2 * BATCH})
  out = pipeline.run(config, str(tmp_path))
  # ImageNet-LT has a validation list: the second stages start from stage 1's best epoch.
  assert out["stage1_checkpoint"]["which"] == "best"
  stage1, _ = saved_state(stage1_dir, "best")
  for method in ("crt", "lws"):
    state, _ = saved_state(tmp_path / method)
    assert_trees_equal(stage1["params"]["backbone"], state["params"]["backbone"])
    # The reference's backbone is in train mode: its statistics follow the batches.
    assert not np.allclose(stage1["batch_stats"]["backbone"]["bn1"]["mean"],
                           state["batch_stats"]["backbone"]["bn1"]["mean"])
    assert out["stages"][method]["config"]["train"]["sampler"] == "class_aware"
  crt, lws = saved_state(tmp_path / "crt")[0], saved_state(tmp_path / "lws")[0]
  assert not np.array_equal(crt["params"]["head"]["kernel"], stage1["params"]["head"]["kernel"])
  # LWS keeps stage 1's classifier and learns one scale per class.
  assert_trees_equal(stage1["params"]["head"]["kernel"], lws["params"]["head"]["kernel"])
  assert lws["params"]["head"]["scales"].shape == (1000,)
  assert not np.all(np.asarray(lws["params"]["head"]["scales"]) == 1.0)


TAUS = (0.0, 0.5, 1.0)


def test_tau_norm_and_logit_adjustment_rescore_a_host_fed_stage_1(tree, whole, tmp_path):
  stage1_dir, stage1_out, _ = whole
  config = list_config(tree, **{"decouple.methods": ("tau_norm", "logit_adjust"),
                                "decouple.stage1_workdir": str(stage1_dir),
                                "decouple.taus": TAUS})
  out = pipeline.run(config, str(tmp_path))
  tau_norm, adjusted = out["stages"]["tau_norm"], out["stages"]["logit_adjust"]
  assert adjusted["stage1_checkpoint"]["which"] == "best"
  # tau 0 leaves stage 1's logits: its own host-fed test accuracy at its best epoch, exactly.
  assert adjusted["tau_0"]["top1_acc"] == stage1_out["best"]["top1_acc"]
  assert adjusted["curve"][0]["test_top1_acc"] == stage1_out["best"]["top1_acc"]
  assert adjusted["prior_counts"] == stage1_out["class_counts"]
  # tau-norm against the saved classifier applied by hand to the model's features.
  kernel = np.asarray(saved_state(stage1_dir, "best")[0]["params"]["head"]["kernel"], np.float64)
  applied = applied_to_splits(tree, stage1_dir, "test", "val", which="best")
  for split, (labels, _, features) in applied.items():
    for tau in (0.5, 1.0):
      scaled = kernel / np.linalg.norm(kernel, axis=0) ** tau
      hits = np.argmax(features.astype(np.float64) @ scaled, -1) == labels
      row = tau_norm["curve"][TAUS.index(tau)]
      assert row[f"{split}_top1_acc"] == pytest.approx(100 * hits.mean())
  for method, res in (("tau_norm", tau_norm), ("logit_adjust", adjusted)):
    val = [row["val_top1_acc"] for row in res["curve"]]
    assert res["tau"] == TAUS[int(np.argmax(val))] and res["tuned_on"] == "val"
    chosen = res["curve"][TAUS.index(res["tau"])]
    assert res["final"]["top1_acc"] == pytest.approx(chosen["test_top1_acc"])
    # Many / Medium / Few by the training list's counts, as stage 1 reports them.
    assert res["group_counts"] == stage1_out["group_counts"] == list(TRAIN_COUNTS) + [0] * 996
    assert res["final"]["medium_acc"] == pytest.approx(res["final"]["per_class_acc"][0])
    saved = json.loads((tmp_path / method / workdir_lib.RESULTS_FILE).read_text())
    assert saved["final"] == res["final"] and "confusion" not in saved["final"]
    confusion = np.load(tmp_path / method / inputs.CONFUSION_FILE)
    assert confusion["test"].shape == (1000, 1000)
    np.testing.assert_allclose(100 * np.trace(confusion["test"]) / 7, res["final"]["top1_acc"])
    assert (tmp_path / method / "tau_curve.png").read_bytes().startswith(b"\x89PNG")


def test_tuning_tau_on_inaturalist_validation_is_refused_before_any_work(tree, tmp_path):
  config = list_config(tree, **{"dataset.name": "inat18", "decouple.methods": ("tau_norm",)})
  with pytest.raises(ConfigError, match=r"decouple.tune_on='val' needs a validation split .*"
                                        r"'inat18' has none .*decouple.tune_on='test'"):
    pipeline.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_the_feed_started_at_a_step_gives_that_steps_images(tree):
  train = image_lists.read_list(str(tree / "ImageNet_LT_train.txt"), str(tree), 1000)
  sharding = parallel.batch_sharded(parallel.make_mesh())

  def feed(start):
    f = feed_lib.HostFeed(
        lambda step: image_pipeline.train_batches(
            train, batch_size=BATCH, num_epochs=EPOCHS, seed=5, order="class_aware",
            augment=image_pipeline.Augment(size=32, color_jitter=True), start_step=step),
        sharding, spec={}, stream={})
    f.start(start)
    return f

  whole, late = feed(0), feed(5)
  try:
    batches = [jax.device_get(next(whole)) for _ in range(EPOCHS * STEPS_PER_EPOCH)]
    direct = list(image_pipeline.train_batches(
        train, batch_size=BATCH, num_epochs=EPOCHS, seed=5, order="class_aware",
        augment=image_pipeline.Augment(size=32, color_jitter=True)))
    for got, want in zip(batches, direct):
      assert np.array_equal(got["image"], want["image"])
      assert np.array_equal(got["label"], want["label"])
    assert len(direct) == len(batches)
    for expected in batches[5:]:
      got = jax.device_get(next(late))
      assert np.array_equal(got["image"], expected["image"])
      assert np.array_equal(got["label"], expected["label"])
    assert late.state() == {"position": EPOCHS * STEPS_PER_EPOCH, "stream": {}}
  finally:
    whole.close()
    late.close()


def test_resuming_on_another_stream_is_refused(tree):
  f = feed_lib.HostFeed(lambda step: iter(()), None, spec={}, stream={"seed": 1, "order": "x"})
  f.check({"position": 3, "stream": {"seed": 1, "order": "x"}}, 3, "ckpt")
  with pytest.raises(DataError, match=r"another input stream \(seed differ"):
    f.check({"position": 3, "stream": {"seed": 2, "order": "x"}}, 3, "ckpt")
  with pytest.raises(DataError, match="at step 3 but its input stream at step 5"):
    f.check({"position": 5, "stream": {"seed": 1, "order": "x"}}, 3, "ckpt")


def test_the_resample_rule_trains_on_a_list_in_its_host_order(tree, tmp_path, monkeypatch):
  recorder = Recorder(monkeypatch)
  out = pipeline.run(list_config(tree, **{"train.rule": "resample", "train.cb_beta": 0.9}),
                     str(tmp_path))
  assert out["selected_on"] == "val"
  train = inputs.read_splits(list_config(tree).dataset)["train"]
  want = np.concatenate([train.labels[samplers.epoch_order(
      train.labels, "resample", 0, e, num_epochs=EPOCHS, beta=0.9)[:STEPS_PER_EPOCH * BATCH]]
      for e in range(EPOCHS)])
  assert np.concatenate([labels for _, labels in recorder.seen]).tolist() == want.tolist()


def test_a_grid_member_on_lists_ends_as_its_run_alone(tree, whole, tmp_path):
  # Seeds 0 and 1 in one program, each model fed its own run's batches. Member seed 0 is the
  # uninterrupted run's config.
  workdir, alone, _ = whole
  out = pipeline.run(list_config(tree, **{"grid.methods": ("ce",), "grid.seeds": (0, 1)}),
                     str(tmp_path))
  assert [(row["method"], row["seeds"]) for row in out["summary"]] == [("ce", 2)]
  member = tmp_path / "scratch" / "ce" / "seed_0"
  grid_run = json.loads((member / workdir_lib.RESULTS_FILE).read_text())
  assert grid_run["grid"]["models_in_program"] == 2
  for key in ("class_counts", "group_counts", "dataset", "final", "best", "history"):
    assert grid_run[key] == alone[key], key
  assert_trees_equal(saved_state(member)[0]["params"], saved_state(workdir)[0]["params"])
  for split in ("test", "val"):
    np.testing.assert_array_equal(np.load(member / inputs.CONFUSION_FILE)[split],
                                  np.load(workdir / inputs.CONFUSION_FILE)[split])
  other_seed = json.loads((tmp_path / "scratch" / "ce" / "seed_1" /
                           workdir_lib.RESULTS_FILE).read_text())
  assert other_seed["history"] != alone["history"]  # Its own seed's batches and weights.


@pytest.mark.parametrize("fields, message", [
    ({"dataset.lists_dir": None}, r"dataset.lists_dir is required"),
    ({"semi.enabled": True, "semi.pool_source": "npz"},
     r"semi.pool_source='npz' is an array pool; .* \('same_split', 'image_folder'\)"),
    ({"semi.enabled": True, "semi.unlabeled_batch_fraction": 0.5,
      "train.sampler": "class_aware"},
     r"semi.unlabeled_batch_fraction=0.5 draws its own mixed batches.*'class_aware'"),
])
def test_unsupported_settings_for_list_datasets_are_named(tree, tmp_path, fields, message):
  with pytest.raises(ConfigError, match=message):
    pipeline.run(list_config(tree, **fields), str(tmp_path))


def test_class_weights_over_a_list_without_some_classes_are_refused(tree, tmp_path):
  with pytest.raises(DataError, match=r"no training image for 996 of the 1000 classes .*"
                                      r"train.rule='reweight'"):
    pipeline.run(list_config(tree, **{"train.rule": "reweight"}), str(tmp_path))


def test_a_missing_list_or_image_fails_before_training(tree, tmp_path):
  with pytest.raises(DataError, match=r"split list .*ImageNet_LT_train.txt is missing"):
    pipeline.run(list_config(tree, **{"dataset.lists_dir": str(tmp_path)}), str(tmp_path / "a"))
  broken = write_tree(tmp_path / "broken", {"train": (2, 1), "val": (1, 1), "test": (1, 1)})
  first = (broken / "ImageNet_LT_train.txt").read_text().split()[0]
  (broken / first).unlink()
  with pytest.raises(DataError, match=r"1 of the 3 images listed in .*_train.txt are missing"):
    pipeline.run(list_config(broken), str(tmp_path / "b"))
  assert not (tmp_path / "b" / "checkpoints").exists()  # Nothing trained.


def test_check_reads_every_listed_image_and_names_all_broken_ones(tree, tmp_path):
  copy = tmp_path / "tree"
  shutil.copytree(tree, copy)
  report = preflight.check(list_config(copy))
  assert report.status == preflight.READY, report.text
  total = sum(TRAIN_COUNTS) + sum(sum(c) for c in EVAL_COUNTS.values())
  assert f"data: imagenet_lt found; {total:,} listed images readable" in report.text
  # A truncated JPEG was found mid-training; a text file, at its first read. Both now here.
  listed = image_lists.read_list(str(copy / "ImageNet_LT_train.txt"), str(copy), 1000).paths
  with open(listed[3], "rb") as f:
    data = f.read()
  with open(listed[3], "wb") as f:
    f.write(data[:-10])
  with open(listed[7], "w") as f:
    f.write("not an image")
  report = preflight.check(list_config(copy))
  assert report.status == preflight.DATA_ABSENT
  assert f"2 of the {total:,} image files cannot be used" in report.text
  assert f"{listed[3]} (a truncated JPEG" in report.text and listed[7] in report.text
