"""Every numeric config field has a documented range; values that cannot work are refused and
legal but unusual ones get one warning line, before any work."""

import glob
import os

import ml_collections
import pytest
from conftest import tiny_config

from lt_jax import ranges
from lt_jax.config import get_base_config, override
from lt_jax.errors import ConfigError
from lt_jax.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _numeric_fields(config: ml_collections.ConfigDict, prefix: str = ""):
  """Dotted names of the numeric fields: numbers, tuples of numbers, numeric placeholders."""
  for key in config:
    value, field = config[key], f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _numeric_fields(value, field + ".")
    elif isinstance(value, bool):
      continue
    elif isinstance(value, (int, float)):
      yield field
    elif isinstance(value, (tuple, list)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
      yield field
    elif value is None and config.get_type(key) in (int, float):
      yield field


def test_every_numeric_field_has_a_range():
  fields = set(_numeric_fields(get_base_config()))
  assert fields - set(ranges.RANGES) == set()
  assert set(ranges.RANGES) - fields == set()  # And no range for a field that does not exist.


def test_the_documented_table_is_the_checked_one():
  with open(os.path.join(ROOT, "docs", "RANGES.md")) as f:
    assert f.read() == ranges.markdown(), "regenerate: python -m lt_jax.ranges > docs/RANGES.md"


def test_the_defaults_and_every_stock_config_are_within_the_usual_ranges():
  import importlib.util
  configs = [get_base_config()]
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    if not path.endswith("__init__.py"):
      spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      configs.append(module.get_config())
  for config in configs:
    warnings = []
    ranges.check(config, warn=warnings.append)
    assert warnings == []


@pytest.mark.parametrize("fields, fragments", [
    # Trained to a loss of 3.5e-19 and below-chance accuracy.
    ({"loss.focal_gamma": 1e4}, ["loss.focal_gamma=10000.0 must be in [0, 20]", "0-5"]),
    # Trained at a loss of 2,033: a cosine margin of 2 or more can never be met.
    ({"loss.ldam_max_m": 100.0}, ["loss.ldam_max_m=100.0 must be in (0, 2)", "never be met"]),
    # Finite in float64, inf in float32: it passed and diverged at step 0.
    ({"loss.la_tau": 1e39}, ["loss.la_tau=1e+39 is not a finite number in float32",
                             "set a finite value in [0, 100]", "the default is 1.0"]),
    ({"optim.lr": 1e39}, ["optim.lr=1e+39 is not a finite number in float32"]),
    ({"train.batch_size": None}, ["train.batch_size=None must be a number at least 1"]),
    ({"optim.decay_factors": (0.1, -1.0)}, ["optim.decay_factors=(0.1, -1.0) must be > 0"]),
])
def test_values_that_cannot_work_are_refused_naming_the_range(fields, fragments):
  c = tiny_config()
  if "optim.decay_factors" in fields:
    c.optim.decay_epochs = (1, 2)
  with pytest.raises(ConfigError) as info:
    validate(override(c, **fields), check_data=False)
  for fragment in fragments:
    assert fragment in str(info.value), (fragment, str(info.value))


def _warnings(capsys, **fields):
  validate(override(tiny_config(), **fields))
  return [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("fields, fragment", [
    ({"loss.focal_gamma": 8.0}, "loss.focal_gamma=8.0 is outside its usual range [0, 5]"),
    ({"loss.name": "ldam", "model.head": "cosine", "loss.ldam_max_m": 1.5},
     "loss.ldam_max_m=1.5 is outside its usual range [0, 1]"),
    # LR milestones past the last epoch, and a warm-up longer than the run, trained silently.
    ({"optim.decay_epochs": (2, 5), "optim.decay_factors": (0.1, 0.01)},
     "the decay at epoch 5 is not before train.num_epochs=3, so it never happens"),
    ({"optim.warmup_epochs": 4}, "optim.warmup_epochs=4 is longer than train.num_epochs=3"),
    # The reference pairs LDAM with the cosine head.
    ({"loss.name": "ldam"}, "loss.name='ldam' with model.head='linear'"),
])
def test_legal_but_unusual_settings_get_one_warning_line(capsys, fields, fragment):
  lines = _warnings(capsys, **fields)
  assert len(lines) == 1 and fragment in lines[0], lines


def test_usual_settings_get_no_warning(capsys):
  assert _warnings(capsys) == []
  assert _warnings(capsys, **{"loss.name": "ldam", "model.head": "cosine"}) == []
