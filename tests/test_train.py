"""The training loop end to end on digits-LT: results, resume, devices, workdir guards."""

import json
import os
import types

import jax
import numpy as np
import pytest
from conftest import killed_at_epoch, read_jsonl, tiny_config

from lt_jax import parallel, pipeline, results
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_params(workdir):
  state, _ = Checkpoints(os.path.join(workdir, "checkpoints", "last")).restore()
  return state


def assert_trees_close(a, b, **tol):
  flat_a, tree_a = jax.tree.flatten(a)
  flat_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_results_json_and_plot(tmp_path):
  config = tiny_config(loss__name="ldam", model__head="cosine", train__rule="drw")
  out = pipeline.run(config, str(tmp_path))
  saved = json.loads((tmp_path / workdir_lib.RESULTS_FILE).read_text())
  assert saved["class_counts"] == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
  assert saved["dataset"]["train_size"] == 403 and saved["dataset"]["test_size"] == 539
  for block in ("final", "best"):
    b = saved[block]
    assert set(b) >= {"top1_acc", "top1_err", "top5_acc", "per_class_acc", "many_acc",
                      "medium_acc", "few_acc"}
    assert b["top1_err"] == pytest.approx(100 - b["top1_acc"])
    assert len(b["per_class_acc"]) == 10
    assert b["many_acc"] is None  # No class has more than 100 training images.
    # Medium: 20..100 images (classes 0-6), Few: < 20 (classes 7-9).
    assert b["medium_acc"] == pytest.approx(np.mean(b["per_class_acc"][:7]))
    assert b["few_acc"] == pytest.approx(np.mean(b["per_class_acc"][7:]))
    assert sum(map(sum, b["confusion"])) == 539
  assert saved["selected_on"] == "test" and saved["selection_note"]
  assert saved["best"]["top1_acc"] == max(h["test/top1_acc"] for h in saved["history"])
  assert saved["final"]["top1_acc"] == saved["history"][-1]["test/top1_acc"]
  assert saved["wall_time_s"] > 0 and saved["train_images_per_s"] > 0
  assert saved["config"]["loss"]["name"] == "ldam"
  assert out["final"] == saved["final"]
  png = (tmp_path / results.PLOT_FILE).read_bytes()
  assert png.startswith(b"\x89PNG")
  lines = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["epoch"] for r in lines if "epoch" in r] == [1, 2, 3]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))


def test_short_training_on_digits_beats_chance_by_far(tmp_path):
  out = pipeline.run(tiny_config(train__num_epochs=6, optim__decay_epochs=(5,)),
                                str(tmp_path))
  assert out["final"]["top1_acc"] > 60.0  # Chance is 10% on the balanced test set.
  assert out["final"]["balanced_acc"] > 50.0


def test_validation_split_drives_selection(tmp_path):
  config = tiny_config(dataset__val_per_class=5)
  out = pipeline.run(config, str(tmp_path))
  assert out["selected_on"] == "val" and out["selection_note"] is None
  assert out["dataset"]["val_size"] == 50
  best_epoch = max(out["history"], key=lambda h: (h["val/top1_acc"], -h["epoch"]))["epoch"]
  assert out["best"]["epoch"] == best_epoch
  assert out["best"]["top1_acc"] == out["history"][best_epoch - 1]["test/top1_acc"]


RESUME_CONFIG = dict(train__rule="resample", train__num_epochs=4,
                     train__checkpoint_every_epochs=2, train__steps_per_call=3)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
  """An uninterrupted run that the interrupted ones are compared with."""
  workdir = tmp_path_factory.mktemp("whole")
  return workdir, pipeline.run(tiny_config(**RESUME_CONFIG), str(workdir))


def assert_same_run(whole_dir, whole_out, cut_dir, resumed):
  whole, cut = last_params(whole_dir), last_params(cut_dir)
  assert int(cut["step"]) == int(whole["step"])
  assert_trees_close(whole["params"], cut["params"], rtol=0, atol=0)
  assert_trees_close(whole["batch_stats"], cut["batch_stats"], rtol=0, atol=0)
  assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
  assert resumed["history"] == whole_out["history"]  # Epoch means too, bit for bit.
  assert resumed["final"] == whole_out["final"] and resumed["best"] == whole_out["best"]
  best_dir = Checkpoints(str(cut_dir / "checkpoints" / "best"))
  _, meta = best_dir.restore()
  assert meta["epoch"] == resumed["best"]["epoch"]
  lines = read_jsonl(cut_dir / "metrics.jsonl")
  whole_lines = read_jsonl(whole_dir / "metrics.jsonl")
  assert [r["step"] for r in lines] == [r["step"] for r in whole_lines]  # No duplicate.
  assert [r["epoch"] for r in lines if "epoch" in r] == [1, 2, 3, 4]


def test_resume_gives_identical_parameters(tmp_path, whole_run):
  # Checkpoints every 2 epochs; killed in epoch 4, so epoch 3 (whose best checkpoint may already
  # be on disk) is replayed after the restart.
  config = tiny_config(**RESUME_CONFIG)
  killed_at_epoch(lambda: pipeline.run(config, str(tmp_path / "cut")), 4)
  assert not (tmp_path / "cut" / workdir_lib.RESULTS_FILE).exists()
  resumed = pipeline.run(config, str(tmp_path / "cut"))
  assert_same_run(*whole_run, tmp_path / "cut", resumed)


def test_stop_requests_at_an_epoch_end_and_mid_epoch_resume_identically(tmp_path, whole_run,
                                                                       monkeypatch):
  from lt_jax.train import preemption
  config = tiny_config(**RESUME_CONFIG)
  spe = -(-403 // 32)  # digits-LT at img_max 100: 403 images, 13 steps per epoch.
  cut = tmp_path / "cut"

  def stopped_at(poll: int) -> int:
    """Runs until the `poll`-th stop poll asks to stop; returns the step it saved."""
    polls = []

    def agreed():
      polls.append(1)
      return "SIGTERM" if len(polls) == poll else None

    monkeypatch.setattr(preemption, "agreed", agreed)
    with pytest.raises(preemption.Stopped) as stopped:
      pipeline.run(config, str(cut))
    monkeypatch.undo()
    assert stopped.value.signal_name == "SIGTERM"
    assert Checkpoints(str(cut / "checkpoints" / "last")).latest_step() == stopped.value.step
    assert not (cut / workdir_lib.RESULTS_FILE).exists()
    assert not (cut / workdir_lib.LOCK_FILE).exists()
    return stopped.value.step

  # Polls come at window ends inside an epoch (steps 5, 10) and at the epoch's end (13).
  assert stopped_at(3) == spe
  # Resumed at 13, its polls are at 15 (a window end inside epoch 2), ...
  assert stopped_at(1) == 15
  resumed = pipeline.run(config, str(cut))
  assert_same_run(*whole_run, cut, resumed)


def test_finished_workdir_is_not_retrained_and_other_configs_are_refused(tmp_path, capsys):
  config = tiny_config(train__num_epochs=1)
  first = pipeline.run(config, str(tmp_path))
  before = (tmp_path / workdir_lib.RESULTS_FILE).stat().st_mtime_ns
  again = pipeline.run(config, str(tmp_path))
  assert again == json.loads(json.dumps(first))
  assert (tmp_path / workdir_lib.RESULTS_FILE).stat().st_mtime_ns == before
  assert "already holds a finished run" in capsys.readouterr().out
  with pytest.raises(ConfigError, match="loss.name"):
    pipeline.run(tiny_config(train__num_epochs=1, loss__name="focal"), str(tmp_path))


def test_a_batch_that_does_not_split_over_the_devices_is_named():
  # Equality of one and two devices (and two processes) is tests/test_multiprocess.py's.
  two_devices = types.SimpleNamespace(shape={"data": 2})
  parallel.check_batch_divides(64, two_devices, "train.batch_size")
  with pytest.raises(ConfigError, match="train.batch_size=33 does not divide over the 2 devices"):
    parallel.check_batch_divides(33, two_devices, "train.batch_size")
  eight = types.SimpleNamespace(shape={"data": 8})
  with pytest.raises(ConfigError, match=r"=100 .* 8 devices; use a multiple of 8 \(the nearest "
                     r"are 96 and 104\)"):
    parallel.check_batch_divides(100, eight, "train.batch_size")
  with pytest.raises(ConfigError, match=r"\(the smallest is 8\)"):
    parallel.check_batch_divides(5, eight, "train.batch_size")
  groups = types.SimpleNamespace(shape={"models": 4, "data": 2})  # A grid's models split.
  with pytest.raises(ConfigError, match="over the 2 devices of a model's group"):
    parallel.check_batch_divides(33, groups, "train.batch_size")


def test_a_forward_pass_batch_is_rounded_up_to_the_devices():
  for devices, asked, padded in ((1, 100, 100), (8, 100, 104), (8, 500, 504), (8, 512, 512),
                                 (8, 3, 8), (6, 64, 66)):
    mesh = types.SimpleNamespace(shape={"data": devices})
    assert parallel.padded_batch_size(asked, mesh) == padded


def test_a_field_added_since_the_run_counts_only_when_set_away_from_its_default(tmp_path):
  config = tiny_config()
  saved = json.loads(config.to_json_best_effort())
  del saved["model"]["conv_impl"]  # A workdir written before the field existed.
  (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(saved))
  workdir_lib.check_config(str(tmp_path), config)  # Default value: the same run.
  with pytest.raises(ConfigError, match="model.conv_impl"):
    workdir_lib.check_config(str(tmp_path), tiny_config(model__conv_impl="xla"))
  with pytest.raises(ConfigError, match="loss.name"):
    workdir_lib.check_config(str(tmp_path), tiny_config(loss__name="focal"))


def test_a_renamed_field_in_a_saved_config_is_read_under_its_new_name(tmp_path):
  config = tiny_config()
  saved = json.loads(config.to_json_best_effort())
  saved["optim"]["reference_lr_bug"] = saved["optim"].pop("first_release_lr_schedule")
  (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(saved))
  workdir_lib.check_config(str(tmp_path), config)  # The same run under the old name.
  with pytest.raises(ConfigError, match="optim.first_release_lr_schedule"):
    workdir_lib.check_config(str(tmp_path), tiny_config(optim__first_release_lr_schedule=True))
