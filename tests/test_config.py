"""Every config in configs/ loads and validates; impossible settings fail naming the field."""

import glob
import os
import subprocess
import sys

import pytest
from conftest import tiny_config

from lt_jax.errors import ConfigError, DataError
from lt_jax.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
CONFIGS = [p for p in CONFIGS if not p.endswith("__init__.py")]


def load(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_is_valid(path):
  config = load(path)
  validate(config, check_data=False)
  with open(path) as f:
    doc = f.read()
  assert "python run.py --config=configs/" + os.path.basename(path) in doc


def test_required_configs_exist():
  names = {os.path.basename(p)[:-3] for p in CONFIGS}
  assert names >= {"cifar10lt_ce", "cifar10lt_ldam_drw", "cifar100lt_ce", "cifar100lt_ldam_drw",
                   "svhnlt_ce", "fmnistlt_ce", "fmnistlt_ldam_drw", "digits_lt_ce",
                   "digits_lt_ldam_drw"}


@pytest.mark.parametrize("field,value", [
    ("loss__name", "hinge"), ("dataset__imbalance_ratio", 0.5), ("train__rule", "Reweight"),
    ("train__sampler", "oversample"), ("model__name", "resnet18"), ("model__head", "arc"),
    ("optim__schedule", "linear"), ("dataset__name", "mnist"), ("dataset__imb_type", "linear"),
    ("train__batch_size", 0), ("train__select_on", "train"), ("augment__name", "autoaugment"),
    ("train__cb_beta", 1.0), ("model__conv_impl", "fast"),
])
def test_bad_field_is_named(field, value):
  config = tiny_config(**{field: value})
  with pytest.raises(ConfigError, match=field.replace("__", ".")):
    validate(config)


def test_inconsistent_settings_are_named():
  with pytest.raises(ConfigError, match="train.rule='resample'"):
    validate(tiny_config(train__rule="resample", train__sampler="sqrt"))
  with pytest.raises(ConfigError, match="dataset.val_per_class"):
    validate(tiny_config(train__select_on="val"))
  with pytest.raises(ConfigError, match="dataset.npz_path"):
    validate(tiny_config(dataset__name="npz"))


def test_absent_source_files_fail_before_training(tmp_path):
  config = tiny_config(dataset__name="cifar10", dataset__data_dir=str(tmp_path))
  with pytest.raises(DataError, match="cifar-10-batches-py"):
    validate(config)


def test_cli_reports_a_bad_field_and_exits(tmp_path):
  proc = subprocess.run(
      [sys.executable, "run.py", "--config=configs/digits_lt_ce.py", "--config.loss.name=hinge",
       f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "loss.name='hinge'" in proc.stderr + proc.stdout
  assert not os.listdir(tmp_path)  # Nothing was written.


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_says_its_command_runtime_and_paper_number(path):
  """What the README promises of every docstring: the command, a `Runtime:` line (measured,
  with its machine, or what running it needs) and a `Paper:` line (the number to reach, or
  why there is none)."""
  import ast
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  assert f"python run.py --config=configs/{os.path.basename(path)}" in doc
  entries, key = {}, None  # "Runtime" / "Paper" -> its text, wrapped lines joined.
  for line in doc.splitlines():
    if line.startswith(("Runtime: ", "Paper: ")):
      key, text = line.split(": ", 1)
      assert key not in entries, f"two {key} lines"
      entries[key] = text
    elif key is not None and line.startswith("  "):  # A wrapped continuation line.
      entries[key] += " " + line.strip()
    else:
      key = None
  assert set(entries) == {"Runtime", "Paper"}, doc
  runtime = entries["Runtime"]
  measured = any(unit in runtime for unit in (" s ", " s;", " min", "minutes", "hours"))
  assert measured or "not measured" in runtime, runtime


# The reference's values, read from its config files: classifier-balancing (22370c6)
# config/<dataset>/cls_crt.yaml and cls_lws.yaml, imbalanced-semi-self (760f039)
# imagenet_inat/config/ImageNet_LT/feat_uniform.yaml (batch_size 128 since 28e6258). iNaturalist's
# stage-1 batch departs from its reference on purpose (configs/inat18_ce.py), so is not checked.
@pytest.mark.parametrize("name, stage1_batch, crt_epochs, weight_decay", [
    ("imagenetlt_ssp_crt", 128, 10, 5e-4), ("inat18_ssp_crt", None, 30, 1e-4)])
def test_imagenet_and_inaturalist_second_stages_are_the_references(
    name, stage1_batch, crt_epochs, weight_decay):
  from lt_jax import decouple

  config = load(os.path.join(ROOT, "configs", f"{name}.py"))
  assert stage1_batch is None or config.train.batch_size == stage1_batch
  crt = decouple.stage_config(config, "crt", "/stage1/checkpoints/best")
  lws = decouple.stage_config(config, "lws", "/stage1/checkpoints/best")
  assert crt.train.num_epochs == crt_epochs and lws.train.num_epochs == 5  # cls_lws.yaml.
  for stage in (crt, lws):
    assert stage.train.batch_size == 512 and stage.optim.lr == 0.2
    assert stage.optim.weight_decay == weight_decay and stage.train.sampler == "class_aware"
    assert stage.optim.schedule == "cosine" and stage.optim.cosine_offset == 1
    assert stage.model.frozen_bn_updates  # The backbone in train mode, as model.train().
  assert config.decouple.stage1_checkpoint == "auto"
