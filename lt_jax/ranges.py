"""The range of every numeric config field: one table that validation checks and the docs print.

A value outside its range cannot work (a cosine margin of 2 or more can never be met; a
momentum of 1 never forgets) and is refused before any work. A value inside it but outside its
usual range is legal and gets one warning line. Floats are checked as float32 too, since that is
what the train step computes with: 1e39 is finite in Python and inf on the device.

`python -m lt_jax.ranges` prints the table as markdown (docs/RANGES.md is that output).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import ml_collections
import numpy as np

from lt_jax.config import get_base_config
from lt_jax.errors import ConfigError

INF = math.inf
FLOAT32_MAX = float(np.finfo(np.float32).max)  # Beyond it a float is inf on the device.


@dataclasses.dataclass(frozen=True)
class Range:
  """[low, high] (either end open when `*_open`), whole numbers only when `integer`."""

  low: float = -INF
  high: float = INF
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  usual: tuple[float, float] | None = None  # Legal values outside it get a warning.
  why: str = ""  # What the bound protects, or where the usual values come from.

  def contains(self, value: float) -> bool:
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def requirement(self) -> str:
    """What a value must be, for messages: 'at least 1', '> 0', 'in [0, 1)'."""
    if self.high == INF and self.integer:
      return f"at least {_number(self.low + (1 if self.low_open else 0))}"
    if self.high == INF:
      return f"{'>' if self.low_open else '>='} {_number(self.low)}"
    return f"in {self.text()}"

  def text(self) -> str:
    if self.integer and self.high == INF:
      return f">= {_number(self.low + (1 if self.low_open else 0))}"
    if self.high == INF:
      return f"{'>' if self.low_open else '>='} {_number(self.low)}"
    return (f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
            f"{')' if self.high_open else ']'}")


def _number(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else f"{x:g}"


COUNT = Range(1, integer=True)  # Epochs, batch sizes, dimensions: at least one.
NONNEGATIVE_COUNT = Range(0, integer=True)
POSITIVE = Range(0, low_open=True)
NONNEGATIVE = Range(0)
MOMENTUM = Range(0, 1, high_open=True, why="1 would never forget the first gradient")
SEED = Range(0, 2**32, high_open=True, integer=True, why="numpy's seed range")

RANGES: dict[str, Range] = {
    "seed": SEED,
    "dataset.lt_seed": Range(0, 2**32 - 1, high_open=True, integer=True,
                             why="numpy also seeds lt_seed + 1"),
    "dataset.imbalance_ratio": Range(1, why="rho = largest / smallest class"),
    "dataset.img_max": Range(1, integer=True, why="the largest class of the subset"),
    "dataset.val_per_class": NONNEGATIVE_COUNT,
    "dataset.image_size": COUNT,
    "dataset.test_fraction": Range(0, 1, high_open=True, why="the share of each class held out"),
    "dataset.resize_size": COUNT,
    "dataset.num_workers": NONNEGATIVE_COUNT,
    "augment.crop_padding": Range(0, integer=True, usual=(0, 8), why="the reference pads 4"),
    "loss.focal_gamma": Range(0, 20, usual=(0, 5), why=(
        "the focal paper's range is 0-5; above 20, (1 - p)^gamma is below 1e-6 for every "
        "example predicted at p >= 0.5, so only misclassified examples train")),
    "loss.la_tau": Range(0, 100, usual=(0, 3), why=(
        "tau log(prior) shifts the logits by tens at tau 10 already; past 100 the shifts swamp "
        "the logits in float32")),
    "loss.ldam_max_m": Range(0, 2, low_open=True, high_open=True, usual=(0, 1), why=(
        "a margin on cosines in [-1, 1]: 2 or more can never be met; the reference's is 0.5")),
    "loss.ldam_s": Range(0, low_open=True, usual=(1, 100), why="the reference's scale is 30"),
    "train.num_epochs": COUNT,
    "train.batch_size": COUNT,
    "train.eval_batch_size": COUNT,
    "train.eval_every_epochs": COUNT,
    "train.checkpoint_every_epochs": COUNT,
    "train.log_every_steps": COUNT,
    "train.steps_per_call": Range(0, integer=True, why="0 for auto: chosen per stage"),
    "train.samples_per_class": COUNT,
    "train.cb_beta": Range(0, 1, high_open=True, usual=(0.9, 0.9999),
                           why="1 would divide by zero in the effective number"),
    "train.drw_epoch": NONNEGATIVE_COUNT,
    "optim.lr": Range(0, low_open=True, usual=(0, 2)),
    "optim.momentum": MOMENTUM,
    "optim.weight_decay": Range(0, usual=(0, 0.01)),
    "optim.warmup_epochs": NONNEGATIVE_COUNT,
    "optim.cosine_offset": Range(0, 1, integer=True,
                                 why="1: stepped before each epoch, as the ImageNet-LT reference"),
    "optim.decay_factors": POSITIVE,
    "optim.decay_epochs": NONNEGATIVE_COUNT,
    "semi.unlabeled_ratio": Range(1, why="rho_U"),
    "semi.unlabeled_factor": Range(1),
    "semi.unlabeled_weight": NONNEGATIVE,
    "semi.unlabeled_batch_fraction": Range(0, 1, low_open=True, high_open=True, why=(
        "or None to concatenate D_L and D_U as the reference does")),
    "semi.confidence_threshold": Range(0, 1),
    "semi.per_class_max": COUNT,
    "semi.base_batch_size": COUNT,
    "semi.label_batch_size": COUNT,
    "pretrain.num_epochs": COUNT,
    "pretrain.batch_size": COUNT,
    "pretrain.probe_epochs": Range(0, integer=True, why="0 skips the probe"),
    "pretrain.lr": POSITIVE,
    "pretrain.momentum": MOMENTUM,
    "pretrain.weight_decay": NONNEGATIVE,
    "pretrain.encoder_momentum": MOMENTUM,
    "pretrain.temperature": Range(0, low_open=True, usual=(0.01, 1),
                                  why="MoCo v2's is 0.2, SimCLR's 0.5"),
    "pretrain.queue_size": COUNT,
    "pretrain.proj_dim": COUNT,
    "pretrain.proj_hidden": COUNT,
    "pretrain.bn_groups": COUNT,
    "pretrain.crop_scale": Range(0, 1, low_open=True, why=(
        "(low, high) with 0 < low <= high <= 1: the random resized crop's area fractions")),
    "grid.seeds": SEED,
    "grid.max_models_per_program": Range(0, integer=True, why="0: no cap"),
    "grid.devices_per_model": Range(0, integer=True, why="0: every model on every device"),
    "grid.semi_batch_size": COUNT,
    "decouple.num_epochs": COUNT,
    "decouple.lws_num_epochs": COUNT,
    "decouple.batch_size": COUNT,
    "decouple.lr": POSITIVE,
    "decouple.momentum": MOMENTUM,
    "decouple.weight_decay": NONNEGATIVE,
    "decouple.taus": Range(0, usual=(0, 5)),
}


def check(config: ml_collections.ConfigDict, warn: Callable[[str], None] | None = None) -> None:
  """Raises ConfigError for the first value outside its range; calls `warn` with one line for
  each legal value outside its usual range. A field set to None (an unset placeholder) and
  tuples (each element) are handled; fields absent from `config` are skipped."""
  defaults = get_base_config()
  for field, rule in RANGES.items():
    value = lookup(config, field)
    if value is None and lookup(defaults, field) is not None:
      raise ConfigError(f"{field}=None must be a number {rule.requirement()}.")
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if v is not None:
        _check_one(field, value, v, rule, warn)


def _check_one(field: str, shown, v, rule: Range, warn) -> None:
  where = f"{field}={shown!r}"
  reason = f" ({rule.why})" if rule.why else ""
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    raise ConfigError(f"{where} must be a number {rule.requirement()}.")
  if rule.integer and not isinstance(v, int):
    raise ConfigError(f"{where} must be a whole number {rule.requirement()}.")
  if isinstance(v, float) and not abs(v) <= FLOAT32_MAX:  # NaN too.
    default = lookup(get_base_config(), field)
    float32 = " in float32, which the step computes in" if math.isfinite(v) else ""
    raise ConfigError(f"{where} is not a finite number{float32}; set a finite value "
                      f"{rule.requirement()}"
                      + ("" if default is None else f" (the default is {default})") + ".")
  if not rule.contains(v):
    raise ConfigError(f"{where} must be {rule.requirement()}{reason}.")
  if warn is not None and rule.usual is not None and not rule.usual[0] <= v <= rule.usual[1]:
    low, high = (_number(x) for x in rule.usual)
    warn(f"{where} is outside its usual range [{low}, {high}]{reason}.")


def lookup(config, dotted: str):
  """The value of a dotted field, or None where the config lacks it."""
  node = config
  for name in dotted.split("."):
    if name not in node:
      return None
    node = node[name]
  return node


def markdown() -> str:
  """The table as docs/RANGES.md holds it."""
  lines = ["# Numeric config fields and their ranges", "",
           "Generated by `python -m lt_jax.ranges` from `lt_jax/ranges.py`, which validation "
           "checks: a value outside its range is refused before any work, a legal value "
           "outside its usual range gets one warning line. Floats must also be finite in "
           "float32. A tuple field's range applies to each element; None (an unset "
           "placeholder) is not checked.", "",
           "| field | range | usual | why |", "|---|---|---|---|"]
  for field, rule in RANGES.items():
    usual = "" if rule.usual is None else f"[{_number(rule.usual[0])}, {_number(rule.usual[1])}]"
    kind = " (whole)" if rule.integer else ""
    lines.append(f"| `{field}` | {rule.text()}{kind} | {usual} | {rule.why} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  print(markdown(), end="")
