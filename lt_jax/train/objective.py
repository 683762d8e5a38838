"""From the config's loss and train rule to one scalar objective `(logits, labels, epoch)`.

`LOSSES` and `RULES` are the tables of what `loss.name` and `train.rule` may name; each entry
carries what validation, the data checks and the divergence report need to know of it, so a
new loss is one function in losses.py plus one entry here (docs/EXTENDING.md).

The train rule decides the per-class weights (none and resample: none; reweight: class-balanced
from the start; drw: uniform until train.drw_epoch, then class-balanced) and the loss decides
how logits and labels become per-example values. The reduction follows the reference: PyTorch's
weighted cross-entropy divides by the batch's sum of weights, focal takes a plain mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lt_jax import losses
from lt_jax.errors import ConfigError

PerExample = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]
Objective = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Loss:
  """A loss as `loss.name` names it: how logits and labels become per-example values, and
  what the rest of the code needs to know about it."""
  # (config.loss, training images per class) -> (logits, labels, class weights or None) -> [B]
  per_example: Callable[[ml_collections.ConfigDict, np.ndarray], PerExample]
  plain_mean: bool = False  # Reduce by a plain mean, not by the batch's sum of class weights.
  uses_counts: bool = False  # Reads each class's training count (a margin, a prior).
  knobs: tuple[str, ...] = ()  # Its own fields, named (with their values) when a run diverges.
  head: str | None = None  # The head the reference pairs it with; another one gets a warning.


def _log_prior(counts) -> jax.Array:
  return jnp.asarray(losses.log_priors(np.asarray(counts)), jnp.float32)


def _ldam(loss, counts) -> PerExample:
  margins = jnp.asarray(losses.ldam_margins(np.asarray(counts), max_m=loss.ldam_max_m))
  return lambda z, y, w: losses.ldam_loss(z, y, margins=margins, scale=loss.ldam_s,
                                          class_weights=w)


def _balanced_softmax(loss, counts) -> PerExample:
  del loss
  log_prior = _log_prior(counts)
  return lambda z, y, w: losses.balanced_softmax_loss(z, y, log_prior=log_prior,
                                                      class_weights=w)


def _logit_adjust(loss, counts) -> PerExample:
  log_prior = _log_prior(counts)
  return lambda z, y, w: losses.logit_adjusted_loss(z, y, log_prior=log_prior, tau=loss.la_tau,
                                                    class_weights=w)


LOSSES: dict[str, Loss] = {
    "ce": Loss(lambda loss, counts: lambda z, y, w: losses.weighted_cross_entropy(
        z, y, class_weights=w)),
    # The reference's FocalLoss averages its (weighted) terms plainly.
    "focal": Loss(lambda loss, counts: lambda z, y, w: losses.focal_loss(
        z, y, gamma=loss.focal_gamma, class_weights=w, reference_form=loss.focal_reference_form),
        plain_mean=True, knobs=("loss.focal_gamma",)),
    "ldam": Loss(_ldam, uses_counts=True, knobs=("loss.ldam_max_m", "loss.ldam_s"),
                 head="cosine"),
    "balanced_softmax": Loss(_balanced_softmax, uses_counts=True),
    "logit_adjust": Loss(_logit_adjust, uses_counts=True, knobs=("loss.la_tau",)),
}


@dataclasses.dataclass(frozen=True)
class Rule:
  """A train rule as `train.rule` names it: the per-class weights over the epochs, and the
  sampler it brings, if any."""
  # (training images per class, train.cb_beta, train.drw_epoch) -> epoch -> weights [C] or None
  weights: Callable[[np.ndarray, float, int], Callable[[jax.Array], jax.Array | None]]
  sampler: str | None = None  # Its own sampler (train.sampler must then be 'instance').
  uses_counts: bool = False  # Weighs classes by their training counts.
  knobs: tuple[str, ...] = ()  # Its own fields, named when a run diverges.


def _class_balanced(counts, beta) -> jax.Array:
  return jnp.asarray(losses.class_balanced_weights(np.asarray(counts), beta=beta), jnp.float32)


def _reweight(counts, beta, drw_epoch):
  cb = _class_balanced(counts, beta)
  return lambda epoch: cb


def _drw(counts, beta, drw_epoch):
  cb = _class_balanced(counts, beta)
  return lambda epoch: losses.drw_weights(epoch, cb, drw_epoch)


RULES: dict[str, Rule] = {
    "none": Rule(lambda counts, beta, drw_epoch: lambda epoch: None),
    # The reference's Resample draws images with probability proportional to their
    # class-balanced weight (data/samplers.py) and weighs nothing.
    "resample": Rule(lambda counts, beta, drw_epoch: lambda epoch: None, sampler="resample"),
    "reweight": Rule(_reweight, uses_counts=True, knobs=("train.cb_beta",)),
    # Uniform until train.drw_epoch, then class-balanced.
    "drw": Rule(_drw, uses_counts=True, knobs=("train.cb_beta",)),
}


def sampler_for(rule: str, sampler: str) -> str:
  """The sampler a run uses: the rule's own (Resample) or the configured train.sampler."""
  return RULES[rule].sampler or sampler


def uses_class_counts(rule: str, loss: str) -> str | None:
  """The setting that needs every class's training count (so no class may be empty), or
  None when neither the rule nor the loss reads the counts."""
  if RULES[rule].uses_counts:
    return f"train.rule={rule!r}"
  if LOSSES[loss].uses_counts:
    return f"loss.name={loss!r}"
  return None


def make_class_weights(rule: str, counts, *, beta: float, drw_epoch: int
                       ) -> Callable[[jax.Array], jax.Array | None]:
  """epoch -> per-class weights [C] (or None for unweighted)."""
  if rule not in RULES:
    raise ConfigError(f"train.rule={rule!r} is unknown; choose one of {tuple(RULES)}.")
  return RULES[rule].weights(counts, beta, drw_epoch)


def per_example_loss(loss: ml_collections.ConfigDict, counts) -> PerExample:
  """(logits, labels, class_weights) -> per-example loss [B] for `loss.name`."""
  if loss.name not in LOSSES:
    raise ConfigError(f"loss.name={loss.name!r} is unknown; choose one of {tuple(LOSSES)}.")
  return LOSSES[loss.name].per_example(loss, counts)


def make_objective(config: ml_collections.ConfigDict, counts) -> Objective:
  """(logits, labels, epoch, where=None) -> scalar loss, with the reference's reduction over
  the examples where `where` is True (all by default)."""
  weights_at = make_class_weights(config.train.rule, counts, beta=config.train.cb_beta,
                                  drw_epoch=config.train.drw_epoch)
  per_example = per_example_loss(config.loss, counts)
  plain_mean = LOSSES[config.loss.name].plain_mean

  def objective(logits, labels, epoch, where=None):
    w = weights_at(epoch)
    values = per_example(logits, labels, w)
    if plain_mean:
      return losses.masked_mean(values, where=where)
    return losses.weighted_mean(values, labels, class_weights=w, where=where)
  return objective
