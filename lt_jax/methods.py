"""Long-tail methods by name: each a small set of config overrides, listed in one place.

A method sets every field that tells methods apart (METHOD_FIELDS) starting from plain
cross-entropy, so it never inherits another method's loss or rule from the config it is applied
to. The knobs of a method (focal's gamma, LDAM's margin and scale, DRW's epoch, beta, tau) keep
the config's values.
"""

from __future__ import annotations

import ml_collections

from lt_jax.config import override, set_fields
from lt_jax.errors import ConfigError

# Plain cross-entropy; every method starts from these values.
METHOD_FIELDS = {"loss.name": "ce", "model.head": "linear", "train.rule": "none",
                 "train.sampler": "instance"}

METHODS = {
    "ce": {},
    "focal": {"loss.name": "focal"},  # Lin et al. 2017; gamma loss.focal_gamma.
    "reweight": {"train.rule": "reweight"},  # Class-balanced weights (Cui et al. 2019).
    "cb_focal": {"loss.name": "focal", "train.rule": "reweight"},
    "resample": {"train.rule": "resample"},  # The reference's class-balanced resampling.
    "drw": {"train.rule": "drw"},  # CE with deferred re-weighting from train.drw_epoch.
    "ldam": {"loss.name": "ldam", "model.head": "cosine"},  # Cao et al. 2019.
    "ldam_drw": {"loss.name": "ldam", "model.head": "cosine", "train.rule": "drw"},
    "balanced_softmax": {"loss.name": "balanced_softmax"},  # Ren et al. 2020.
    "logit_adjust": {"loss.name": "logit_adjust"},  # Menon et al. 2021; tau loss.la_tau.
    "class_balanced_sampling": {"train.sampler": "class_balanced"},
    "sqrt_sampling": {"train.sampler": "sqrt"},
    "progressive_sampling": {"train.sampler": "progressive"},
}


def check_method(name: str, field: str = "grid.methods") -> None:
  if name not in METHODS:
    raise ConfigError(f"{field} names {name!r}, which is not a method; choose from "
                      f"{tuple(METHODS)} (lt_jax/methods.py).")


def set_method(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Makes `config` train with method `name`, in place (what configs/ files do); returns it."""
  check_method(name)
  return set_fields(config, **(METHOD_FIELDS | METHODS[name]))


def apply_method(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A copy of `config` training with method `name`."""
  return set_method(override(config), name)
