"""From the config's loss and train rule to one scalar objective `(logits, labels, epoch)`.

The train rule decides the per-class weights (none and resample: none; reweight: class-balanced
from the start; drw: uniform until train.drw_epoch, then class-balanced) and the loss decides
how logits and labels become per-example values. The reduction follows the reference: PyTorch's
weighted cross-entropy divides by the batch's sum of weights, focal takes a plain mean.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import losses
from lt_jax.errors import ConfigError

LOSSES = ("ce", "focal", "ldam", "balanced_softmax", "logit_adjust")
RULES = ("none", "reweight", "resample", "drw")
# Train rules that bring their own sampler: the reference's Resample draws images with
# probability proportional to their class-balanced weight (data/samplers.py).
RULE_SAMPLERS = {"resample": "resample"}

# Rules and losses that weigh, shift or set margins by each class's training count.
COUNT_RULES = ("reweight", "drw")
COUNT_LOSSES = ("ldam", "balanced_softmax", "logit_adjust")

Objective = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def uses_class_counts(rule: str, loss: str) -> str | None:
  """The setting that needs every class's training count (so no class may be empty), or
  None when neither the rule nor the loss reads the counts."""
  if rule in COUNT_RULES:
    return f"train.rule={rule!r}"
  if loss in COUNT_LOSSES:
    return f"loss.name={loss!r}"
  return None


def sampler_for(rule: str, sampler: str) -> str:
  """The sampler a run uses: the rule's own (Resample) or the configured train.sampler."""
  return RULE_SAMPLERS.get(rule, sampler)


def make_class_weights(rule: str, counts, *, beta: float, drw_epoch: int
                       ) -> Callable[[jax.Array], jax.Array | None]:
  """epoch -> per-class weights [C] (or None for unweighted)."""
  if rule not in RULES:
    raise ConfigError(f"train.rule={rule!r} is unknown; choose one of {RULES}.")
  if rule in ("none", "resample"):
    return lambda epoch: None
  cb = jnp.asarray(losses.class_balanced_weights(np.asarray(counts), beta=beta), jnp.float32)
  if rule == "reweight":
    return lambda epoch: cb
  return lambda epoch: losses.drw_weights(epoch, cb, drw_epoch)


def per_example_loss(loss: ml_collections.ConfigDict, counts
                     ) -> Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]:
  """(logits, labels, class_weights) -> per-example loss [B] for `loss.name`."""
  name = loss.name
  if name == "ce":
    return lambda z, y, w: losses.weighted_cross_entropy(z, y, class_weights=w)
  if name == "focal":
    return lambda z, y, w: losses.focal_loss(z, y, gamma=loss.focal_gamma, class_weights=w,
                                             reference_form=loss.focal_reference_form)
  if name == "ldam":
    margins = jnp.asarray(losses.ldam_margins(np.asarray(counts), max_m=loss.ldam_max_m))
    return lambda z, y, w: losses.ldam_loss(z, y, margins=margins, scale=loss.ldam_s,
                                            class_weights=w)
  log_prior = jnp.asarray(losses.log_priors(np.asarray(counts)), jnp.float32)
  if name == "balanced_softmax":
    return lambda z, y, w: losses.balanced_softmax_loss(z, y, log_prior=log_prior,
                                                        class_weights=w)
  if name == "logit_adjust":
    return lambda z, y, w: losses.logit_adjusted_loss(z, y, log_prior=log_prior,
                                                      tau=loss.la_tau, class_weights=w)
  raise ConfigError(f"loss.name={name!r} is unknown; choose one of {LOSSES}.")


def make_objective(config: ml_collections.ConfigDict, counts) -> Objective:
  """(logits, labels, epoch, where=None) -> scalar loss, with the reference's reduction over
  the examples where `where` is True (all by default)."""
  weights_at = make_class_weights(config.train.rule, counts, beta=config.train.cb_beta,
                                  drw_epoch=config.train.drw_epoch)
  per_example = per_example_loss(config.loss, counts)
  plain_mean = config.loss.name == "focal"

  def objective(logits, labels, epoch, where=None):
    w = weights_at(epoch)
    values = per_example(logits, labels, w)
    if plain_mean:
      return losses.masked_mean(values, where=where)
    return losses.weighted_mean(values, labels, class_weights=w, where=where)
  return objective
