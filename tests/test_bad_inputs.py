"""What a new user mistypes or breaks: each bad input stops with one message that names the field
or file and the fix, before training wherever it can be known then; it leaves no output that
looks complete, and the corrected command then works in the same workdir."""

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import killed_at_epoch, read_jsonl, tiny_config

from lt_jax import errors, io_utils, pipeline, predict
from lt_jax import workdir as workdir_lib
from lt_jax.checkpoint import Checkpoints
from lt_jax.config import override
from lt_jax.data import prepare
from lt_jax.errors import ConfigError, DataError
from lt_jax.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INF, NAN = float("inf"), float("nan")
# An unreadable checkpoint makes orbax close its event loop with TensorStore callbacks pending;
# they report 'Event loop is closed' whenever they are collected, in whichever test runs then.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def two_epochs(**fields):
  """The runs here that train share this config, and so their compiled programs."""
  return override(tiny_config(train__num_epochs=2), **fields)


def assert_names(error, *fragments):
  for fragment in fragments:
    assert fragment in str(error), f"{fragment!r} not in: {error}"


# --- config fields out of range: found by validate, before anything loads -------------------

SEMI = {"semi.enabled": True}
# (bad fields, what the message must say: the field and the fix, fields that fix it)
CONFIG_CASES = {
    "rho_inf": ({"dataset.imbalance_ratio": INF},
                ["dataset.imbalance_ratio=inf", "set a finite value"],
                {"dataset.imbalance_ratio": 10.0}),
    "rho_nan": ({"dataset.imbalance_ratio": NAN},
                ["dataset.imbalance_ratio=nan", "set a finite value"],
                {"dataset.imbalance_ratio": 10.0}),
    "rho_below_1": ({"dataset.imbalance_ratio": 0.5}, ["dataset.imbalance_ratio=0.5", ">= 1"],
                    {"dataset.imbalance_ratio": 2.0}),
    "rho_empties_classes": ({"dataset.imbalance_ratio": 1000.0},
                            ["dataset.imbalance_ratio=1000", "below 100",
                             "larger dataset.img_max"],
                            {"dataset.imbalance_ratio": 50.0}),
    "img_max_0": ({"dataset.img_max": 0}, ["dataset.img_max=0", "at least 1"],
                  {"dataset.img_max": 50}),
    "val_negative": ({"dataset.val_per_class": -1}, ["dataset.val_per_class=-1", "at least 0"],
                     {"dataset.val_per_class": 0}),
    "lt_seed_negative": ({"dataset.lt_seed": -1}, ["dataset.lt_seed=-1", "[0, "],
                         {"dataset.lt_seed": 1}),
    "seed_negative": ({"seed": -3}, ["seed=-3", "[0, "], {"seed": 3}),
    "npz_without_path": ({"dataset.name": "npz"}, ["dataset.npz_path is required", "x_train"],
                         {"dataset.name": "digits"}),
    "crop_negative": ({"augment.crop_padding": -2}, ["augment.crop_padding=-2", "at least 0"],
                      {"augment.crop_padding": 0}),
    "batch_0": ({"train.batch_size": 0}, ["train.batch_size=0", "at least 1"],
                {"train.batch_size": 16}),
    "epochs_0": ({"train.num_epochs": 0}, ["train.num_epochs=0", "at least 1"],
                 {"train.num_epochs": 2}),
    "drw_never_switches": ({"train.rule": "drw", "train.drw_epoch": 160},
                           ["train.drw_epoch=160", "train.num_epochs=3", "below 3"],
                           {"train.drw_epoch": 2}),
    "cb_beta_1": ({"train.cb_beta": 1.0}, ["train.cb_beta=1.0", "[0, 1)"],
                  {"train.cb_beta": 0.999}),
    "steps_per_call_negative": ({"train.steps_per_call": -1},
                                ["train.steps_per_call=-1", "0 for auto"],
                                {"train.steps_per_call": 0}),
    "select_on_val_without_split": ({"train.select_on": "val"},
                                    ["train.select_on='val'", "dataset.val_per_class > 0"],
                                    {"dataset.val_per_class": 2}),
    "lr_nan": ({"optim.lr": NAN}, ["optim.lr=nan", "the default is 0.1"], {"optim.lr": 0.05}),
    "lr_inf": ({"optim.lr": INF}, ["optim.lr=inf", "set a finite value"], {"optim.lr": 0.05}),
    "lr_0": ({"optim.lr": 0.0}, ["optim.lr=0.0", "> 0"], {"optim.lr": 0.05}),
    "weight_decay_nan": ({"optim.weight_decay": NAN}, ["optim.weight_decay=nan", "finite"],
                         {"optim.weight_decay": 0.0}),
    "momentum_1": ({"optim.momentum": 1.0}, ["optim.momentum=1.0", "in [0, 1)"],
                   {"optim.momentum": 0.9}),
    "decay_unsorted": ({"optim.decay_epochs": (2, 1), "optim.decay_factors": (0.1, 0.01)},
                       ["optim.decay_epochs=(2, 1)", "increasing"],
                       {"optim.decay_epochs": (1, 2)}),
    "decay_factor_0": ({"optim.decay_factors": (0.0,)}, ["optim.decay_factors=(0.0,)", "> 0"],
                       {"optim.decay_factors": (0.1,)}),
    "decay_lengths_differ": ({"optim.decay_epochs": (1, 2)},
                             ["optim.decay_epochs (1, 2)", "same length"],
                             {"optim.decay_factors": (0.1, 0.01)}),
    "schedule_unknown": ({"optim.schedule": "linear"}, ["optim.schedule='linear'", "'cosine'"],
                         {"optim.schedule": "cosine"}),
    "focal_gamma_nan": ({"loss.focal_gamma": NAN}, ["loss.focal_gamma=nan", "default is 1.0"],
                        {"loss.focal_gamma": 2.0}),
    "la_tau_negative": ({"loss.la_tau": -1.0}, ["loss.la_tau=-1.0", "in [0, 100]"],
                        {"loss.la_tau": 1.0}),
    "ldam_scale_0": ({"loss.ldam_s": 0.0}, ["loss.ldam_s", "> 0"], {"loss.ldam_s": 30.0}),
    "loss_misspelt": ({"loss.name": "LDAM"}, ["loss.name='LDAM'", "'ldam'"],
                      {"loss.name": "ldam"}),
    "pool_ratio_inf": (SEMI | {"semi.unlabeled_ratio": INF},
                       ["semi.unlabeled_ratio=inf", "finite"], {"semi.unlabeled_ratio": 10.0}),
    "confidence_above_1": (SEMI | {"semi.confidence_threshold": 1.5},
                           ["semi.confidence_threshold=1.5", "[0, 1]"],
                           {"semi.confidence_threshold": 0.9}),
    "unlabeled_fraction_1": (SEMI | {"semi.unlabeled_batch_fraction": 1.0},
                             ["semi.unlabeled_batch_fraction=1.0", "(0, 1)", "None"],
                             {"semi.unlabeled_batch_fraction": 0.5}),
    "init_from_with_pretraining": ({"pretrain.method": "rotation",
                                    "model.init_from": "/somewhere"},
                                   ["model.init_from and pretrain.method", "Unset one"],
                                   {"model.init_from": None}),
    "temperature_0": ({"pretrain.method": "moco", "pretrain.temperature": 0.0},
                      ["pretrain.temperature", "> 0"], {"pretrain.temperature": 0.2}),
    "crop_scale_reversed": ({"pretrain.method": "moco", "pretrain.crop_scale": (1.5, 0.2)},
                            ["pretrain.crop_scale=(1.5, 0.2)", "0 < low <= high <= 1"],
                            {"pretrain.crop_scale": (0.2, 1.0)}),
    "proj_dim_0": ({"pretrain.method": "simclr", "pretrain.proj_dim": 0},
                   ["pretrain.proj_dim=0", "at least 1"], {"pretrain.proj_dim": 128}),
    "grid_seed_negative": ({"grid.methods": ("ce",), "grid.seeds": (0, -1)},
                           ["grid.seeds=(0, -1)", "in [0, "], {"grid.seeds": (0, 1)}),
}


@pytest.mark.parametrize("bad, fragments, fix", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_a_bad_setting_is_named_with_its_fix(bad, fragments, fix):
  with pytest.raises(ConfigError) as info:
    validate(override(tiny_config(), **bad))
  assert_names(info.value, *fragments)
  validate(override(tiny_config(), **(bad | fix)))


def test_a_grid_whose_drw_members_never_switch_is_warned_about(capsys):
  config = override(tiny_config(), **{"grid.methods": ("ce", "ldam_drw"), "train.drw_epoch": 5})
  validate(config)
  assert_names(capsys.readouterr().out, "warning: grid.methods has ldam_drw",
               "train.drw_epoch=5", "below 3")
  validate(override(config, **{"train.drw_epoch": 2}))
  assert "warning" not in capsys.readouterr().out


# --- data files broken in each way: found when the data is first read, before training ------


def write_npz(path, **arrays):
  rng = np.random.RandomState(0)
  y_train, y_test = np.repeat(np.arange(10), 20), np.repeat(np.arange(10), 3)
  good = {"x_train": rng.randint(0, 256, (200, 8, 8, 1)).astype(np.uint8), "y_train": y_train,
          "x_test": rng.randint(0, 256, (30, 8, 8, 1)).astype(np.uint8), "y_test": y_test}
  np.savez(path, **(good | arrays))
  return str(path)


def label_12(path):
  """Ten classes labelled 0..8 and 12: 9, 10 and 11 would be classes without an image."""
  y = np.repeat(np.arange(10), 20)
  y[y == 9] = 12
  return write_npz(path, y_train=y)


def truncated(path):
  write_npz(path)
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)
  return str(path)


def damaged_member(path):
  """An archive whose directory is intact but whose x_train member ends inside its header."""
  write_npz(path)
  with zipfile.ZipFile(path) as z:
    members = {n: z.read(n) for n in z.namelist()}
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in members.items():
      z.writestr(name, data[:40] + b"\0" * 5 if name == "x_train.npy" else data)
  return str(path)


def text_file(path):
  path.write_text("x_train,y_train\n1,2\n")
  return str(path)


def single_array(path):
  np.save(path, np.zeros(3))
  return str(path) + ".npy"


def _drop(path, key):
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files if k != key}
  np.savez(path, **arrays)
  return str(path)


def _pickled(path):
  with open(path, "wb") as f:
    np.savez(f, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1, np.int64),
             x_test=np.zeros((1, 8, 8), np.uint8), y_test=np.zeros(1, np.int64))
  return str(path)


NPZ_CASES = {
    "missing": (lambda p: str(p), ["expected an .npz file", "np.savez"]),
    "not_an_archive": (text_file, ["is not a readable .npz file", "np.savez"]),
    "single_array": (single_array, ["holds a single array", "np.savez"]),
    "truncated": (truncated, ["is not a readable .npz file", "np.savez"]),
    "damaged_member": (damaged_member, ["'x_train' cannot be read", "np.savez"]),
    "keys_missing": (lambda p: _drop(write_npz(p), "y_test"),
                     ["lacks the array(s) y_test", "np.savez"]),
    "object_array": (_pickled, ["'x_train' cannot be read", "np.savez"]),
    "float_images": (lambda p: write_npz(p, x_train=np.zeros((200, 8, 8, 1), np.float32)),
                     ["'x_train' is float32", "convert it to uint8"]),
    "label_gap": (label_12, ["no image of class 9, 10, 11", "relabel them"]),
    "labels_mismatch": (lambda p: write_npz(p, y_train=np.zeros(7, np.int64)),
                        ["'y_train' has shape (7,)", "(200,) to match the images"]),
    "float_labels": (lambda p: write_npz(p, y_test=np.zeros(30, np.float32)),
                     ["'y_test' is float32", "integer class ids"]),
    "empty_test": (lambda p: write_npz(p, x_test=np.zeros((0, 8, 8, 1), np.uint8),
                                       y_test=np.zeros(0, np.int64)),
                   ["x_test is empty", "np.savez"]),
    "shapes_differ": (lambda p: write_npz(p, x_test=np.zeros((30, 9, 9, 1), np.uint8)),
                      ["x_test images are (9, 9, 1)", "the same (H, W, C)"]),
}


def npz_config(path):
  return override(tiny_config(), **{"dataset.name": "npz", "dataset.npz_path": path,
                                    "dataset.img_max": 20})


@pytest.mark.parametrize("make, fragments", NPZ_CASES.values(), ids=NPZ_CASES.keys())
def test_a_broken_npz_is_named_with_its_fix(tmp_path, make, fragments):
  path = make(tmp_path / "data.npz")
  config = npz_config(path)
  with pytest.raises(DataError) as info:
    validate(config)
    prepare.prepare(config.dataset)
  assert_names(info.value, path, *fragments)
  config = npz_config(write_npz(tmp_path / "fixed.npz"))
  validate(config)
  assert prepare.prepare(config.dataset).class_counts[0] == 20


def test_archives_of_other_formats_are_named(tmp_path):
  cifar = tmp_path / "cifar-10-batches-py"
  cifar.mkdir()
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    (cifar / name).write_bytes(b"not a pickle")
  config = override(tiny_config(), **{"dataset.name": "cifar10",
                                      "dataset.data_dir": str(tmp_path)})
  validate(config)  # The files are there...
  with pytest.raises(DataError) as info:  # ...but unreadable, which loading finds.
    prepare.prepare(config.dataset)
  assert_names(info.value, "data_batch_1 is not a readable CIFAR python pickle",
               "download and extract")
  os.remove(cifar / "test_batch")
  with pytest.raises(DataError, match="expected 'test_batch' in .* download and extract"):
    validate(config)

  fmnist = tmp_path / "fmnist"
  fmnist.mkdir()
  for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"):
    (fmnist / name).write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x01")
  config = override(tiny_config(), **{"dataset.name": "fashion_mnist",
                                      "dataset.data_dir": str(fmnist)})
  with pytest.raises(DataError, match=r"truncated or corrupt\); install them"):
    prepare.prepare(config.dataset)


def test_empty_classes_from_the_data_size_are_named():
  """img_max None is |train| / C, known once digits are read: rho 1000 empties classes."""
  config = override(tiny_config(), **{"dataset.img_max": None, "dataset.imbalance_ratio": 1e3})
  validate(config)
  with pytest.raises(ConfigError) as info:
    prepare.prepare(config.dataset)
  assert_names(info.value, "dataset.imbalance_ratio=1000", "|train| / classes",
               "below 125.8")


# --- a finished run to break: checkpoints, results, config, init_from -----------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished two-epoch run with checkpoints at both epochs (steps 13 and 26)."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  pipeline.run(two_epochs(), workdir)
  assert sorted(os.listdir(workdir_lib.checkpoint_dir(workdir))) == ["13", "26"]
  return workdir


def copy_of(finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  return workdir


def damage(step_dir):
  for path in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
    with open(path, "r+b") as f:
      f.truncate(4)


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(finished, tmp_path, capsys):
  workdir = copy_of(finished, tmp_path)
  os.remove(os.path.join(workdir, workdir_lib.RESULTS_FILE))  # As if cut off at the end.
  last = workdir_lib.checkpoint_dir(workdir)
  damage(os.path.join(last, "26"))
  os.makedirs(os.path.join(last, "39.orbax-checkpoint-tmp", "state"))  # A save cut off.
  out = pipeline.run(two_epochs(), workdir)
  printed = capsys.readouterr().out
  assert_names(printed, f"the checkpoint {last}/26 cannot be read", "resuming from step 13")
  assert "resumed from" in printed and "epoch 2/2" in printed and "epoch 1/2:" not in printed
  assert out["final"]["epoch"] == 2
  assert glob.glob(os.path.join(last, "26.unreadable-*"))  # Kept aside, not deleted.
  assert not glob.glob(os.path.join(last, "*orbax-checkpoint-tmp*"))
  # The parameter table went to a file; the console got one line.
  table = os.path.join(workdir, workdir_lib.PARAMETERS_FILE)
  assert f"parameters (table: {table})" in printed and "backbone/conv1/kernel" not in printed
  with open(table) as f:
    assert "backbone/conv1/kernel" in f.read()


def test_no_readable_checkpoint_is_an_error_naming_the_folder(finished, tmp_path):
  workdir = copy_of(finished, tmp_path)
  os.remove(os.path.join(workdir, workdir_lib.RESULTS_FILE))
  last = workdir_lib.checkpoint_dir(workdir)
  for step in ("13", "26"):
    damage(os.path.join(last, step))
  with pytest.raises(DataError) as info:
    pipeline.run(two_epochs(), workdir)
  assert_names(info.value, f"{last}/26 cannot be read", "nor can an older step",
               f"delete {last}")
  assert sorted(os.listdir(last)) == ["13", "26"]  # Nothing renamed when nothing could be read.
  assert not os.path.exists(os.path.join(workdir, workdir_lib.RESULTS_FILE))


@pytest.mark.parametrize("name, fragments", [
    (workdir_lib.RESULTS_FILE, ["results.json is not valid JSON", "delete it and run the same"]),
    (workdir_lib.CONFIG_FILE, ["config.json is not valid JSON", "use a new --workdir"]),
], ids=["results", "config"])
def test_a_damaged_json_file_is_named(finished, tmp_path, name, fragments):
  workdir = copy_of(finished, tmp_path)
  with open(os.path.join(workdir, name), "w") as f:
    f.write('{"final": {"top1_acc": 9')
  with pytest.raises(DataError) as info:
    pipeline.run(two_epochs(), workdir)
  assert_names(info.value, os.path.join(workdir, name), *fragments)


def init_from_config(source, **fields):
  return override(two_epochs(), **({"model.init_from": source} | fields))


def test_init_from_of_another_architecture_fails_before_any_work(finished, tmp_path):
  workdir = str(tmp_path / "new")
  with pytest.raises(ConfigError) as info:
    pipeline.run(init_from_config(finished, **{"model.name": "resnet20"}), workdir)
  assert_names(info.value, "model.init_from", "do not fit model.name",
               "missing from the checkpoint", "layer1_1", "set model.name")
  # Three-channel images cannot start from a backbone trained on one channel.
  path = write_npz(tmp_path / "rgb.npz", x_train=np.zeros((200, 8, 8, 3), np.uint8),
                   x_test=np.zeros((30, 8, 8, 3), np.uint8))
  with pytest.raises(ConfigError) as info:
    pipeline.run(init_from_config(finished, **{"dataset.name": "npz", "dataset.npz_path": path,
                                               "dataset.img_max": 20}), workdir)
  assert_names(info.value, "shape mismatch", "['conv1']['kernel']: checkpoint (3, 3, 1, 4) vs "
               "model (3, 3, 3, 4)")
  assert not os.path.exists(workdir)
  validate(init_from_config(finished))  # The same architecture on the same images fits.


@pytest.mark.parametrize("fields, error, fragments", [
    ({"model.init_from": "{tmp}/nothing"}, DataError,
     ["model.init_from=", "holds no checkpoint", "run the pre-training stage first"]),
    (SEMI | {"semi.base_workdir": "{tmp}"}, DataError,
     ["semi.base_workdir=", "holds no finished run", "train it first"]),
    ({"decouple.methods": ("crt",), "decouple.stage1_workdir": "{tmp}"}, DataError,
     ["decouple.stage1_workdir=", "holds no finished run"]),
], ids=["init_from", "semi_base_workdir", "decouple_stage1_workdir"])
def test_a_field_naming_a_missing_run_fails_before_any_work(tmp_path, fields, error, fragments):
  fields = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in fields.items()}
  workdir = tmp_path / "new"
  with pytest.raises(error) as info:
    pipeline.run(override(two_epochs(), **fields), str(workdir))
  assert_names(info.value, *fragments)
  assert not workdir.exists()


def test_a_base_trained_on_another_labeled_set_is_refused_by_name(tmp_path):
  base = tmp_path / "base"
  pipeline.run(two_epochs(**{"train.num_epochs": 1, "dataset.img_max": 40}), str(base))
  # A base trained at img_max=40 was reused at img_max=30 without a word.
  workdir = tmp_path / "semi"
  with pytest.raises(ConfigError) as info:
    pipeline.run(two_epochs(**SEMI, **{"semi.base_workdir": str(base),
                                       "dataset.img_max": 30}), str(workdir))
  assert_names(info.value, f"semi.base_workdir={str(base)!r} trained on another labeled set",
               "dataset.img_max (40 there, 30 here)", "Leave semi.base_workdir empty")
  assert not (workdir / "pseudo_labels").exists()


def flip_one_byte(step_dir):
  """Changes one byte of the checkpoint's array data: it still restores, to other weights."""
  path = sorted(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True))[0]
  with open(path, "r+b") as f:
    f.seek(-1, os.SEEK_END)
    last = f.read(1)
    f.seek(-1, os.SEEK_END)
    f.write(bytes([last[0] ^ 1]))


def test_results_record_the_final_checkpoint_and_reading_it_changes_nothing(finished, tmp_path):
  workdir = copy_of(finished, tmp_path)
  recorded = workdir_lib.read_results(workdir)["checkpoints"]
  assert recorded["last"]["step"] == 26
  step_dir = os.path.join(workdir_lib.checkpoint_dir(workdir), "26")
  assert recorded["last"]["sha256"] == io_utils.sha256_folder(step_dir)
  # The checksum covers the files' content: one byte changes it.
  predict.load_frozen(workdir)  # Reading checks, and leaves the folder as it was.
  assert io_utils.sha256_folder(step_dir) == recorded["last"]["sha256"]
  flip_one_byte(step_dir)
  assert io_utils.sha256_folder(step_dir) != recorded["last"]["sha256"]


@pytest.fixture(scope="module")
def finished_small(tmp_path_factory):
  """A finished run on a labeled set small enough to leave a same-split pool for semi."""
  workdir = str(tmp_path_factory.mktemp("finished_small") / "run")
  pipeline.run(two_epochs(**SMALL), workdir)
  return workdir


SMALL = {"dataset.img_max": 40}  # Leaves >= 86 digits per class for a pool of 79.


@pytest.mark.parametrize("source, fields", [
    ("finished", {"model.init_from": "{run}"}),
    ("finished_small", SEMI | SMALL | {"semi.base_workdir": "{run}"}),
    ("finished", {"decouple.methods": ("crt",), "decouple.stage1_workdir": "{run}",
                  "decouple.stage1_checkpoint": "last"}),
], ids=["init_from", "semi_base_workdir", "decouple_stage1_workdir"])
@pytest.mark.parametrize("change", ["one_byte", "newest_step_removed"])
def test_a_checkpoint_changed_after_its_run_finished_is_refused_before_use(
    request, tmp_path, source, fields, change):
  run = copy_of(request.getfixturevalue(source), tmp_path)
  last = workdir_lib.checkpoint_dir(run)
  older, newest = sorted(os.listdir(last), key=int)
  if change == "one_byte":  # Still readable: it would have given another model in silence.
    flip_one_byte(os.path.join(last, newest))
    fragments = [f"the checkpoint {last}/{newest} changed after its run finished",
                 os.path.join(run, "results.json")]
  else:  # The step before is a whole checkpoint too, but not the reported model.
    shutil.rmtree(os.path.join(last, newest))
    fragments = [f"{last} holds step {older} but its run finished at step {newest}"]
  fields = {k: v.format(run=run) if isinstance(v, str) else v for k, v in fields.items()}
  workdir = tmp_path / "next"
  with pytest.raises(DataError) as info:
    pipeline.run(two_epochs(**fields), str(workdir))
  assert_names(info.value, *fragments, f"delete {run} and run the command that trained it")
  assert not glob.glob(str(workdir / "**" / "checkpoints"), recursive=True)  # No training.
  assert not (workdir / "pseudo_labels" / workdir_lib.PSEUDO_LABELS_FILE).exists()


# --- the workdir: a file, in use, not writable, left by a failed run -------------------------


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  path = tmp_path / "results"
  path.write_text("mine")
  with pytest.raises(ConfigError) as info:
    pipeline.run(two_epochs(), str(path))
  assert_names(info.value, f"--workdir {path} is a file", "choose another --workdir")
  assert path.read_text() == "mine"


def test_a_failed_run_leaves_nothing_that_blocks_the_corrected_command(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  with pytest.raises(ConfigError) as info:  # Known once the digits are drawn: 403 images.
    pipeline.run(two_epochs(**{"train.batch_size": 512}), workdir)
  assert_names(info.value, "train.batch_size=512", "training set (403 images)", "at most 403")
  assert not os.path.exists(os.path.join(workdir, workdir_lib.RESULTS_FILE))
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))
  assert os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE))
  out = pipeline.run(two_epochs(), workdir)  # Another config, same workdir: it trains.
  assert out["final"]["epoch"] == 2
  assert workdir_lib.read_config(workdir).train.batch_size == 32
  capsys.readouterr()
  # Once a run holds work, a different config is still refused.
  with pytest.raises(ConfigError, match="different config .*train.batch_size.* new --workdir"):
    pipeline.run(two_epochs(**{"train.batch_size": 16}), workdir)


@contextlib.contextmanager
def process():
  """A live process of this host, ended on exit; yields its pid."""
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    yield proc
  finally:
    proc.kill()
    proc.wait()


def test_a_second_run_on_a_workdir_in_use_refuses(tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  lock = workdir / workdir_lib.LOCK_FILE
  config = two_epochs(**{"train.batch_size": 512})  # Fails after the lock, before training.
  with process() as other:
    lock.write_text(f"{other.pid} {socket.gethostname()}\n")
    with pytest.raises(ConfigError) as info:
      pipeline.run(config, str(workdir))
    assert_names(info.value, f"workdir {workdir} is in use by another run",
                 f"pid {other.pid}", "use another --workdir")
    assert lock.read_text().split()[0] == str(other.pid)  # Its lock is left alone.
    assert sorted(os.listdir(workdir)) == [workdir_lib.LOCK_FILE]
  # That run has ended without removing its lock (kill -9): the next run takes it over.
  with pytest.raises(ConfigError, match="train.batch_size=512"):
    pipeline.run(config, str(workdir))
  assert f"taking over the stale lock {lock}" in capsys.readouterr().out
  assert not lock.exists()


def test_a_lock_of_a_reused_pid_or_left_empty_is_taken_over(tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  lock = workdir / workdir_lib.LOCK_FILE
  config = two_epochs(**{"train.batch_size": 512})  # Fails after the lock, before training.
  host = socket.gethostname()
  with process() as other:
    with open(f"/proc/{other.pid}/stat") as f:
      started = f.read().rsplit(")", 1)[1].split()[19]
    # The live process that wrote it: refused.
    lock.write_text(f"{other.pid} {host} {started}\n")
    with pytest.raises(ConfigError, match="is in use by another run"):
      pipeline.run(config, str(workdir))
    # The same pid, started at another time: the lock's run is gone and the pid reused.
    lock.write_text(f"{other.pid} {host} {int(started) - 1}\n")
    with pytest.raises(ConfigError, match="train.batch_size=512"):
      pipeline.run(config, str(workdir))
    assert f"pid {other.pid} is now another process" in capsys.readouterr().out
  # An empty lock (its run died before writing its line) blocks only for a few seconds.
  lock.write_text("")
  with pytest.raises(ConfigError, match="is in use by another run"):
    pipeline.run(config, str(workdir))
  old = time.time() - 60
  os.utime(lock, (old, old))
  with pytest.raises(ConfigError, match="train.batch_size=512"):
    pipeline.run(config, str(workdir))
  assert "it has been empty for 60 s" in capsys.readouterr().out
  assert not lock.exists()


def test_a_run_whose_checkpoints_were_deleted_says_it_starts_again(tmp_path, capsys):
  workdir = tmp_path / "run"
  config = two_epochs()
  killed_at_epoch(lambda: pipeline.run(config, str(workdir)), 2)  # After epoch 1's checkpoint.
  shutil.rmtree(workdir_lib.checkpoint_dir(str(workdir)))
  capsys.readouterr()
  out = pipeline.run(config, str(workdir))
  printed = capsys.readouterr().out
  assert f"warning: {workdir} records training up to step" in printed
  assert "training starts again from step 0" in printed and "resumed from" not in printed
  steps = [r["step"] for r in read_jsonl(workdir / "metrics.jsonl")]
  assert steps == sorted(steps) and len(steps) == len(set(steps))  # Replaced, not doubled.
  assert [h["epoch"] for h in out["history"]] == [1, 2]


def test_extending_a_finished_run_says_how_to_train_on_from_it(tmp_path):
  first = tmp_path / "first"
  pipeline.run(two_epochs(), str(first))
  with pytest.raises(ConfigError) as info:
    pipeline.run(two_epochs(**{"train.num_epochs": 3}), str(first))
  assert_names(info.value, "train.num_epochs", "a finished run is not extended",
               f"--config.model.init_from={first} --config.model.init_head=True")
  # The advice works: a new workdir starts from the finished run's weights, head included.
  more = pipeline.run(two_epochs(**{"model.init_from": str(first), "model.init_head": True}),
                      str(tmp_path / "more"))
  assert [h["epoch"] for h in more["history"]] == [1, 2]


def test_a_disk_without_room_for_the_checkpoints_is_refused_before_training(tmp_path,
                                                                           monkeypatch):
  from lt_jax.train import driver
  real = shutil.disk_usage
  monkeypatch.setattr(driver.shutil, "disk_usage", lambda path: real(path)._replace(free=50_000))
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError) as info:
    pipeline.run(two_epochs(), str(workdir))
  # resnet_tiny in float32: 4,934 parameters and their momentum, 120 BatchNorm statistics,
  # the step and the key: (2 x 4,934 + 120) x 4 bytes + 12 = 39.0 KiB. Two copies in
  # checkpoints/last and one in checkpoints/best (selection on test).
  assert_names(info.value, f"the disk holding {workdir} has 48.8 KiB free",
               "3 copies of a 39.0 KiB train state", "choose a --workdir on another disk")
  assert not (workdir / "metrics.jsonl").exists()  # Not one step trained.


def test_a_finished_run_is_read_back_whatever_the_sections_it_never_reads_say(tmp_path):
  # A default changed in a section a plain run never reads (decouple.update_bn_stats went from
  # False to True) must not turn its finished workdir into "a different config".
  workdir = str(tmp_path / "run")
  first = pipeline.run(two_epochs(), workdir)
  unused = {"decouple.update_bn_stats": False, "grid.max_models_per_program": 7,
            "pretrain.lr": 0.5}
  assert pipeline.run(two_epochs(**unused), workdir)["final"] == first["final"]
  with pytest.raises(ConfigError, match=r"different config \(train.batch_size differ"):
    pipeline.run(two_epochs(**{"train.batch_size": 16}), workdir)
  # A section in use on either side still counts.
  decoupled = tmp_path / "decoupled"
  decoupled.mkdir()
  saved = two_epochs(**{"decouple.methods": ("crt",), "decouple.update_bn_stats": False})
  (decoupled / workdir_lib.CONFIG_FILE).write_text(json.dumps(workdir_lib.config_json(saved)))
  with pytest.raises(ConfigError, match=r"different config \(decouple.update_bn_stats differ"):
    workdir_lib.check_config(str(decoupled), override(saved, **{"decouple.update_bn_stats": True}))


def can_mount():
  return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(path, options):
  os.makedirs(path)
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                        capture_output=True)
  if done.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
  try:
    yield str(path)
  finally:
    subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_workdir_is_named(tmp_path):
  workdir = tmp_path / "ro"
  if can_mount():
    context = tmpfs(workdir, "ro,size=1m")
  elif os.geteuid() != 0:
    workdir.mkdir()
    os.chmod(workdir, 0o555)
    context = contextlib.nullcontext(str(workdir))
  else:
    pytest.skip("root without mount: no folder is read-only to this process")
  with context as path:
    with pytest.raises(ConfigError) as info:
      pipeline.run(two_epochs(), path)
    assert_names(info.value, f"cannot write to the workdir {path}", "choose a writable")


def test_os_errors_become_one_line_naming_the_fix(tmp_path):
  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full")
  with pytest.raises(OSError) as info:
    with open("/dev/full", "w") as f:
      f.write("x")
  assert_names(errors.describe_os_error(info.value, "/w"), "the disk is full",
               "run the same command to continue")
  try:  # An error wrapping the OSError, as orbax's background writers raise.
    try:
      raise info.value
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as e:
    assert "the disk is full" in errors.describe_os_error(e, "/w")
  assert errors.describe_os_error(ValueError("a bug"), "/w") is None


# --- the command line ---------------------------------------------------------------------


def cli(*args, timeout=120):
  return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def assert_one_error_line(proc, *fragments):
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert_names(lines[0], *fragments)


def test_cli_config_file_mistakes(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  workdir = str(tmp_path / "w")
  assert_one_error_line(cli("--config=configs/nope.py", f"--workdir={workdir}"),
                        "the config file configs/nope.py does not exist",
                        "--config=configs/digits_lt_ce.py")
  assert_one_error_line(cli(f"--config={broken}", f"--workdir={workdir}"),
                        f"the config file {broken} has a syntax error at line 1", "fix the file")
  assert_one_error_line(cli("--config=configs/digits_lt_ce.py", "--config.train.batchsize=3",
                            f"--workdir={workdir}"),
                        "--config.train.batchsize", "no field train.batchsize",
                        "did you mean train.batch_size?")
  assert not os.path.exists(workdir)


DIGITS_TINY = ["--config=configs/digits_lt_ce.py", "--config.model.name=resnet_tiny",
               "--config.train.log_every_steps=5"]


def test_cli_a_field_is_set_back_to_none(tmp_path):
  # absl read 'None' as the string 'None' for a text field, and failed on a number field.
  ready = cli("--config=configs/digits_lt_semi.py", "--config.semi.base_workdir=None",
              "--config.dataset.img_max=None", "--check")
  assert ready.returncode == 0 and "ready:" in ready.stdout, ready.stdout + ready.stderr
  needed = cli("--config=configs/digits_lt_ce.py", "--config.train.batch_size=None", "--check")
  assert needed.returncode == 1
  assert "train.batch_size=None must be a number at least 1" in needed.stdout


@pytest.mark.parametrize("flag, fragments", [
    ("--config.loss.la_tau=1e39", ["loss.la_tau=1e+39 is not a finite number in float32"]),
    ("--config.loss.focal_gamma=1e4", ["loss.focal_gamma=10000.0 must be in [0, 20]"]),
    ("--config.loss.ldam_max_m=100", ["loss.ldam_max_m=100.0 must be in (0, 2)"]),
])
def test_cli_a_hyper_parameter_that_cannot_work_is_one_line_before_any_work(tmp_path, flag,
                                                                             fragments):
  workdir = str(tmp_path / "w")
  proc = cli(*DIGITS_TINY, flag, f"--workdir={workdir}")
  assert proc.returncode == 1
  assert_one_error_line(proc, *fragments)
  assert not os.path.exists(workdir)


def interrupted(workdir, times: int) -> subprocess.CompletedProcess:
  """run.py on a long run, sent `times` Ctrl-C (SIGINT) once the data is drawn and the model
  built (run.py installs its own handler, so the SIGINT that test runners ignore reaches it)."""
  long_run = [*DIGITS_TINY, "--config.train.num_epochs=2000"]  # Cannot end before the signal.
  proc = subprocess.Popen([sys.executable, "run.py", *long_run, f"--workdir={workdir}"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if line.startswith("class counts:"):
        break
    for _ in range(times):
      proc.send_signal(signal.SIGINT)
      time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=60)
  finally:
    proc.kill()
  return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_cli_ctrl_c_saves_at_the_next_window_and_exits_130(tmp_path):
  workdir = str(tmp_path / "run")
  proc = interrupted(workdir, times=1)
  assert proc.returncode == 130, proc.stderr
  assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
  assert_names(proc.stderr, "SIGINT: saving a checkpoint at the next step boundary",
               "press Ctrl-C again to stop at once", "stopped by SIGINT at step 5",
               "run the same command to continue")
  assert Checkpoints(os.path.join(workdir, "checkpoints", "last")).latest_step() == 5
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))
  assert not os.path.exists(os.path.join(workdir, workdir_lib.RESULTS_FILE))


def test_cli_a_second_ctrl_c_stops_at_once_with_one_line(tmp_path):
  workdir = str(tmp_path / "run")
  proc = interrupted(workdir, times=2)
  assert proc.returncode == 130, proc.stderr
  assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
  assert_names(proc.stderr, f"interrupted; the run in {workdir}",
               "run the same command to continue")
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))
  assert not os.path.exists(os.path.join(workdir, workdir_lib.RESULTS_FILE))


@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_cli_full_disk_is_one_line(tmp_path):
  # Room for the checkpoints' state (3 x 39 KiB) but not for everything a run writes: the disk
  # fills at the first save.
  with tmpfs(tmp_path / "small", "size=200k") as workdir:
    proc = cli(*DIGITS_TINY, "--config.train.num_epochs=1", f"--workdir={workdir}")
    assert_one_error_line(proc, "the disk is full", "free some space",
                          "run the same command to continue")
    assert not os.path.exists(os.path.join(workdir, workdir_lib.RESULTS_FILE))
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))
  # Not even room for the checkpoints: refused before the first step.
  with tmpfs(tmp_path / "tiny", "size=96k") as workdir:
    proc = cli(*DIGITS_TINY, "--config.train.num_epochs=1", f"--workdir={workdir}")
    assert proc.returncode == 1
    assert_one_error_line(proc, f"the disk holding {workdir} has", "3 copies of a 39.0 KiB")
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
  from lt_jax.train import writers
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
  writer = writers.MetricWriter(str(tmp_path), resume_step=2)
  writer.write(3, {"loss": 1.0})
  writer.close()
  steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
  assert steps == [1, 2, 3]


def test_cli_divergence_is_one_line_naming_the_step_and_the_suspect_settings(tmp_path):
  proc = subprocess.run(
      [sys.executable, "run.py", *DIGITS_TINY, "--config.train.num_epochs=2",
       "--config.optim.lr=1e30", "--config.loss.name=focal", f"--workdir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error: training diverged: a non-finite loss or gradient at step 1")
  assert "optim.lr=1e+30, optim.warmup_epochs=" in line and "loss.focal_gamma=1" in line


def test_cli_a_platform_that_cannot_start_is_one_line():
  env = {**os.environ, "JAX_PLATFORMS": "cuda"}  # This machine has no GPU.
  for extra in ([], ["--check"]):
    proc = subprocess.run([sys.executable, "run.py", *DIGITS_TINY, *extra,
                           "--workdir=/nonexistent/never_written"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: JAX cannot start the platform(s) cuda"), proc.stderr


def test_checkpoint_errors_leave_out_bound_method_reprs():
  from lt_jax import checkpoint
  error = ValueError("Error reading <bound method pybind11_object.read of <tensorstore.KvStore "
                     "at 0x7f3a>> for key 'x': truncated file\nsecond line")
  assert checkpoint._first_line(error) == "ValueError: Error reading for key 'x': truncated file"
  assert checkpoint._first_line(OSError("disk full")) == "OSError: disk full"


def test_a_batch_larger_than_the_training_set_is_named_by_the_field_that_set_it():
  from lt_jax.inputs import DeviceInput
  from lt_jax.pipeline import rotation_config
  digits = DeviceInput(prepare.prepare(tiny_config().dataset))  # 403 digits.
  with pytest.raises(ConfigError, match=r"^train.batch_size=5000 is larger than the training "
                     r"set \(403 images\)"):
    digits.check(tiny_config(train__batch_size=5000))
  pretraining = override(tiny_config(), **{"pretrain.method": "rotation",
                                           "pretrain.batch_size": 5000})
  with pytest.raises(ConfigError, match=r"^pretrain.batch_size=5000 is larger"):
    digits.check(rotation_config(pretraining))
