"""A run's folder: what lives where, and the guard that keeps one folder to one config.

  <workdir>/config.json          the resolved config (a different config is refused)
  <workdir>/results.json         present only once the run finished (it is then read back,
                                 never retrained or overwritten)
  <workdir>/checkpoints/last     the newest train state, for resuming
  <workdir>/checkpoints/best     the selected model
  <workdir>/<stage>/...          a pipeline's stages, each a workdir of its own
  <workdir>/pseudo_labels/pseudo_labels.npz, report.json   the semi-supervised labels
"""

from __future__ import annotations

import json
import os

import ml_collections

from lt_jax import io_utils
from lt_jax.config import get_base_config
from lt_jax.errors import ConfigError, DataError

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_KINDS = ("last", "best")
PSEUDO_LABELS_FILE = "pseudo_labels.npz"
PSEUDO_LABEL_REPORT_FILE = "report.json"
PSEUDO_LABEL_PLOT_FILE = "pseudo_labels.png"


def checkpoint_dir(workdir: str, which: str = "last") -> str:
  if which not in CHECKPOINT_KINDS:
    raise ValueError(f"which={which!r}; use one of {CHECKPOINT_KINDS}.")
  return os.path.join(workdir, "checkpoints", which)


def stage_dir(workdir: str, stage: str) -> str:
  """A pipeline stage's own workdir (base, pseudo_labels, final, pretrain, probe)."""
  return os.path.join(workdir, stage)


def config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def read_config(workdir: str) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, CONFIG_FILE)) as f:
    return ml_collections.ConfigDict(json.load(f))


def read_results(workdir: str) -> dict | None:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_config(workdir: str, config: ml_collections.ConfigDict, ignore: tuple = ()) -> None:
  """Raises when `workdir` holds a run of a different config, naming the fields that differ
  (the dotted fields in `ignore` may differ)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    theirs = json.load(f)
  defaults = config_json(get_base_config())
  diff = sorted(d for d in _diff(theirs, config_json(config))
                if d not in ignore
                and not _added_at_default(d, theirs, config_json(config), defaults))
  if diff:
    raise ConfigError(
        f"workdir {workdir} holds a run with a different config ({', '.join(diff[:8])}"
        f"{' ...' if len(diff) > 8 else ''} differ); use a new --workdir, or the old "
        "config to resume that run.")


def guard(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """Returns the finished run's results; raises on a different config; else records ours."""
  os.makedirs(workdir, exist_ok=True)
  check_config(workdir, config)
  finished = read_results(workdir)
  if finished is None:
    io_utils.atomic_write_json(os.path.join(workdir, CONFIG_FILE), config_json(config))
  return finished


def finished_results(workdir: str, field: str) -> dict:
  """The results of a finished run that a config field points at (e.g. semi.base_workdir)."""
  finished = read_results(workdir)
  if finished is None:
    raise DataError(f"{field}={workdir!r} holds no finished run ({RESULTS_FILE} missing); "
                    "train it first or leave the field empty to train one here.")
  return finished


def write_results(workdir: str, results: dict) -> str:
  path = os.path.join(workdir, RESULTS_FILE)
  io_utils.atomic_write_json(path, results)
  return path


def _lookup(tree: dict, dotted: str):
  for key in dotted.split("."):
    if not isinstance(tree, dict) or key not in tree:
      return _MISSING
    tree = tree[key]
  return tree


_MISSING = object()


def _added_at_default(dotted: str, theirs: dict, ours: dict, defaults: dict) -> bool:
  """A field that a run's saved config predates, set to its default: the same run."""
  return (_lookup(theirs, dotted) is _MISSING
          and _lookup(ours, dotted) == _lookup(defaults, dotted))


def _diff(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    for key in set(a) | set(b):
      yield from _diff(a.get(key), b.get(key), f"{prefix}{key}.")
  elif a != b:
    yield prefix.rstrip(".")
