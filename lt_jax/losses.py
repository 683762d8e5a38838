"""Losses for class-imbalanced classification, plus class weights, margins and the DRW schedule.

Every loss is a pure function ``loss(logits, labels, *, ...) -> per_example`` in the style of
optax's classification losses:

* ``logits``: float array ``[B, C]`` (any leading shape ``[..., C]`` works).
* ``labels``: integer class ids ``[B]`` (shape ``logits.shape[:-1]``). An id outside ``[0, C)``
  (e.g. ``-1`` for a padded example) selects no class, so its loss and its class weight are 0;
  still pass ``where=`` to the reduction so it does not count in a plain mean.
* returns one value per example, shape ``[B]``, in float32 (float64 if the logits are float64).

Reduction is the caller's, with the helpers at the end of this module, and it matters for
faithfulness to the reference (LDAM-DRW / "Rethinking the Value of Labels", Yang & Xu 2020):

* CE, weighted CE, LDAM, Balanced Softmax and logit adjustment are reduced with
  :func:`weighted_mean`: ``sum_i l_i / sum_i w_{y_i}``, which is what PyTorch's
  ``nn.CrossEntropyLoss(weight=w)`` does (it divides by the sum of the batch's weights, not by B).
* Focal is reduced with :func:`masked_mean`, a plain mean over examples (the reference calls
  ``loss.mean()`` on the per-example focal values).

Class statistics (counts, weights, margins, log-priors) are always passed explicitly; the host-side
helpers that build them from training-set counts return NumPy float32 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.typing.ArrayLike

__all__ = [
    "balanced_softmax_loss",
    "class_balanced_weights",
    "cross_entropy",
    "deferred_reweighting",
    "drw_weights",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "log_priors",
    "logit_adjusted_loss",
    "masked_mean",
    "weighted_cross_entropy",
    "weighted_mean",
]


# ------------------------------------------------------------------------------------------------
# Host-side class statistics (NumPy).
# ------------------------------------------------------------------------------------------------


def _check_counts(counts: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
  counts = np.asarray(counts, dtype=np.float64)
  if counts.ndim != 1 or counts.size == 0:
    raise ValueError(f"{name}: counts must be a non-empty 1-D sequence, got shape {counts.shape}.")
  bad = np.flatnonzero(~(counts > 0))
  if bad.size:
    raise ValueError(
        f"{name}: every class needs at least one training example; classes {bad.tolist()} have "
        f"counts {counts[bad].tolist()}.")
  return counts


def class_balanced_weights(counts: Sequence[int] | np.ndarray, beta: float = 0.9999) -> np.ndarray:
  r"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019).

  .. math::
    w_j = \frac{1 - \beta}{1 - \beta^{n_j}}, \qquad
    w \leftarrow C \, \frac{w}{\sum_k w_k}

  so the weights sum to ``C``. ``beta = 0`` gives all ones (``0^{n_j} = 0`` for ``n_j >= 1``);
  ``beta -> 1`` approaches inverse-frequency weighting. Computed in float64 and returned as float32,
  as the reference does (NumPy, then ``torch.FloatTensor``).

  Args:
    counts: training images per class, shape ``[C]``, all ``>= 1``.
    beta: hyper-parameter in ``[0, 1)``; the reference uses 0.9999.

  Returns:
    float32 array ``[C]``.
  """
  counts = _check_counts(counts, "class_balanced_weights")
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"class_balanced_weights: beta must lie in [0, 1), got {beta}.")
  effective_num = 1.0 - np.power(beta, counts)
  weights = (1.0 - beta) / effective_num
  weights = weights / np.sum(weights) * counts.size
  return weights.astype(np.float32)


def ldam_margins(counts: Sequence[int] | np.ndarray, max_m: float = 0.5) -> np.ndarray:
  r"""Label-distribution-aware margins (Cao et al., NeurIPS 2019).

  .. math::
    m_j = \frac{C'}{n_j^{1/4}}, \qquad C' \text{ chosen so that } \max_j m_j = \text{max\_m},

  i.e. ``m_j = max_m * (min_k n_k / n_j)^{1/4}``: the rarest class gets ``max_m``.

  Args:
    counts: training images per class, shape ``[C]``, all ``>= 1``.
    max_m: the largest margin; the reference uses 0.5.

  Returns:
    float32 array ``[C]``.
  """
  counts = _check_counts(counts, "ldam_margins")
  m = 1.0 / np.sqrt(np.sqrt(counts))
  m = m * (max_m / np.max(m))
  return m.astype(np.float32)


def log_priors(counts: Sequence[int] | np.ndarray) -> np.ndarray:
  r"""Log class priors ``log(n_j / sum_k n_k)`` of the training label distribution.

  Used by :func:`balanced_softmax_loss` and :func:`logit_adjusted_loss`.

  Args:
    counts: training images per class, shape ``[C]``, all ``>= 1``.

  Returns:
    float32 array ``[C]`` (all ``<= 0``).
  """
  counts = _check_counts(counts, "log_priors")
  return np.log(counts / np.sum(counts)).astype(np.float32)


def deferred_reweighting(epoch: int, counts: Sequence[int] | np.ndarray, *, drw_epoch: int = 160,
                         beta: float = 0.9999) -> np.ndarray:
  """Class weights of deferred re-weighting, DRW (Cao et al. 2019), as the reference computes them.

  The reference (``train_rule == 'DRW'``) sets ``betas = [0, beta]`` and, once per epoch
  (0-indexed), takes ``idx = epoch // drw_epoch``; the index is clipped to ``[0, 1]`` here (the
  reference would index out of range from ``2 * drw_epoch`` on). ``beta = 0`` gives uniform
  weights, so: all ones for ``epoch < drw_epoch``, ``class_balanced_weights(counts, beta)`` from
  ``epoch == drw_epoch`` on.

  Args:
    epoch: the 0-indexed epoch (host-side Python int).
    counts: training images per class, shape ``[C]``.
    drw_epoch: first epoch with class-balanced weights; the reference uses 160.
    beta: the class-balanced beta used after the switch.

  Returns:
    float32 array ``[C]``.
  """
  betas = (0.0, beta)
  idx = int(np.clip(int(epoch) // int(drw_epoch), 0, 1))
  return class_balanced_weights(counts, betas[idx])


def drw_weights(epoch: ArrayLike, cb_weights: ArrayLike, drw_epoch: int = 160) -> jax.Array:
  """Jit-friendly DRW: ``cb_weights`` when ``epoch >= drw_epoch``, else ones.

  Same schedule as :func:`deferred_reweighting`, for a step that carries the epoch as a traced
  scalar: build ``cb_weights = class_balanced_weights(counts, beta)`` once on the host.

  Args:
    epoch: scalar (may be traced), the 0-indexed epoch.
    cb_weights: class-balanced weights, shape ``[C]``.
    drw_epoch: first epoch with class-balanced weights.

  Returns:
    array ``[C]`` with the dtype of ``cb_weights``.
  """
  cb_weights = jnp.asarray(cb_weights)
  return jnp.where(jnp.asarray(epoch) >= drw_epoch, cb_weights, jnp.ones_like(cb_weights))


# ------------------------------------------------------------------------------------------------
# Per-example losses (jax.numpy, jit-able, differentiable).
# ------------------------------------------------------------------------------------------------


def _prepare(logits: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Upcasts logits to at least float32 and returns (logits, labels, boolean one-hot mask)."""
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise TypeError(f"logits must be floating point, got {logits.dtype}.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class ids, got {labels.dtype} (one-hot labels are not "
                    "accepted).")
  if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
    raise ValueError(f"labels shape {labels.shape} must equal logits shape {logits.shape} without "
                     "its last (class) axis.")
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  num_classes = logits.shape[-1]
  onehot = labels[..., None] == jnp.arange(num_classes, dtype=labels.dtype)
  return logits, labels, onehot


def _ce_from_onehot(logits: jax.Array, onehot: jax.Array) -> jax.Array:
  log_p = jax.nn.log_softmax(logits, axis=-1)
  # `where` rather than a product: a -inf log-probability of another class cannot make a NaN.
  return -jnp.sum(jnp.where(onehot, log_p, 0.0), axis=-1)


def _gather_weights(class_weights: ArrayLike | None, onehot: jax.Array,
                    dtype: jnp.dtype) -> jax.Array | None:
  """``w_{y_i}`` for every example (0 for an out-of-range label), or None for no weights."""
  if class_weights is None:
    return None
  w = jnp.asarray(class_weights, dtype=dtype)
  if w.shape != onehot.shape[-1:]:
    raise ValueError(f"class_weights shape {w.shape} must be ({onehot.shape[-1]},), one weight per "
                     "class.")
  return jnp.sum(jnp.where(onehot, w, 0.0), axis=-1)


def _weighted(per_example: jax.Array, weights: jax.Array | None) -> jax.Array:
  return per_example if weights is None else weights * per_example


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Softmax cross-entropy with integer labels.

  .. math::
    \ell_i = -\log \operatorname{softmax}(z_i)_{y_i}
           = \log \sum_j e^{z_{ij}} - z_{i y_i}

  computed with ``jax.nn.log_softmax``, so it is finite for logits as large as ``+-1e4`` and more.

  Args:
    logits: ``[B, C]`` unnormalised scores.
    labels: ``[B]`` integer class ids.

  Returns:
    ``[B]`` per-example losses (reduce with :func:`weighted_mean` or :func:`masked_mean`).
  """
  logits, _, onehot = _prepare(logits, labels)
  return _ce_from_onehot(logits, onehot)


def weighted_cross_entropy(logits: ArrayLike, labels: ArrayLike, *,
                           class_weights: ArrayLike | None = None) -> jax.Array:
  r"""Class-weighted softmax cross-entropy, unreduced.

  .. math::
    \ell_i = w_{y_i} \, \mathrm{CE}(z_i, y_i)

  This is PyTorch's ``F.cross_entropy(z, y, weight=w, reduction='none')``. To reproduce the
  reference's ``nn.CrossEntropyLoss(weight=w)`` (mean reduction), reduce with
  :func:`weighted_mean`, which divides by ``sum_i w_{y_i}``.

  Args:
    logits: ``[B, C]`` unnormalised scores.
    labels: ``[B]`` integer class ids.
    class_weights: ``[C]`` per-class weights, e.g. :func:`class_balanced_weights`; None means ones.

  Returns:
    ``[B]`` per-example losses.
  """
  logits, _, onehot = _prepare(logits, labels)
  ce = _ce_from_onehot(logits, onehot)
  return _weighted(ce, _gather_weights(class_weights, onehot, logits.dtype))


def _safe_pow(base: jax.Array, exponent: jax.Array) -> jax.Array:
  """``base ** exponent`` for ``base >= 0`` with ``0 ** 0 = 1``, and no NaN/inf gradient at 0."""
  positive = base > 0
  safe_base = jnp.where(positive, base, 1.0)
  at_zero = jnp.where(exponent == 0, 1.0, 0.0).astype(base.dtype)
  return jnp.where(positive, safe_base ** exponent, at_zero)


@jax.custom_jvp
def _focal_term(c: jax.Array, gamma: jax.Array) -> jax.Array:
  """``(1 - exp(-c)) ** gamma * c`` for ``c >= 0``."""
  return _safe_pow(-jnp.expm1(-c), gamma) * c


@_focal_term.defjvp
def _focal_term_jvp(primals, tangents):
  # f(c, g) = q^g c with q = 1 - e^{-c}.  Differentiating q^g directly gives g q^{g-1}, which is
  # infinite at q = 0 for g < 1 and overflows for tiny q. Rewritten exactly:
  #   df/dc = q^g (1 + g c e^{-c} / q) = q^g (1 + g c / expm1(c)),   c / expm1(c) in (0, 1],
  #   df/dg = q^g log(q) c            (-> 0 as q -> 0).
  c, gamma = primals
  dc, dgamma = tangents
  q = -jnp.expm1(-c)
  mod = _safe_pow(q, gamma)
  positive = c > 0
  safe_c = jnp.where(positive, c, 1.0)
  ratio = jnp.where(positive, safe_c / jnp.expm1(safe_c), 1.0)
  log_q = jnp.log(jnp.where(q > 0, q, 1.0))
  df_dc = mod * (1.0 + gamma * ratio)
  df_dgamma = mod * log_q * c
  return mod * c, df_dc * dc + df_dgamma * dgamma


def focal_loss(logits: ArrayLike, labels: ArrayLike, *, gamma: float = 1.0,
               class_weights: ArrayLike | None = None,
               reference_form: bool = False) -> jax.Array:
  r"""Focal loss (Lin et al., ICCV 2017) with optional class weights, unreduced.

  Default (the weighted focal loss of the paper, ``alpha_t = w_{y_i}``):

  .. math::
    p_i = e^{-\mathrm{CE}(z_i, y_i)}, \qquad
    \ell_i = w_{y_i} (1 - p_i)^{\gamma} \, \mathrm{CE}(z_i, y_i)

  ``reference_form=True`` reproduces the LDAM-DRW / "Rethinking the Value of Labels" code, which
  applies the focal term to the *weighted* CE: ``c_i = w_{y_i} CE_i``, ``p_i = e^{-c_i}``,
  ``l_i = (1 - p_i)^gamma c_i``, so ``p_i = p_t^{w_{y_i}}`` is not the true-class probability.
  Both forms agree when the weights are 1 (the paper's Focal runs use none); they differ under
  Reweight / DRW. ``gamma = 0`` gives :func:`weighted_cross_entropy` exactly in both forms. The
  reference reduces with a plain mean over examples, :func:`masked_mean` (not
  :func:`weighted_mean`).

  ``1 - p_i`` is computed as ``-expm1(-c_i)`` and the derivative is implemented in closed form,
  ``(1 - p)^gamma (1 + gamma c / expm1(c))``, so gradients stay finite for ``gamma < 1`` and for a
  perfectly classified example (``c_i = 0``).

  Args:
    logits: ``[B, C]`` unnormalised scores.
    labels: ``[B]`` integer class ids.
    gamma: focusing parameter ``>= 0``; the reference uses 1.
    class_weights: ``[C]`` per-class weights; None means ones.
    reference_form: apply the focal term to the weighted CE, as the reference code does.

  Returns:
    ``[B]`` per-example losses.
  """
  if isinstance(gamma, (int, float)) and gamma < 0:
    raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}.")
  logits, _, onehot = _prepare(logits, labels)
  ce = _ce_from_onehot(logits, onehot)
  weights = _gather_weights(class_weights, onehot, logits.dtype)
  gamma = jnp.asarray(gamma, dtype=ce.dtype)
  if reference_form:
    return _focal_term(_weighted(ce, weights), gamma)
  return _weighted(_focal_term(ce, gamma), weights)


def ldam_loss(logits: ArrayLike, labels: ArrayLike, *, margins: ArrayLike, scale: float = 30.0,
              class_weights: ArrayLike | None = None) -> jax.Array:
  r"""Label-distribution-aware margin loss, LDAM (Cao et al., NeurIPS 2019), unreduced.

  .. math::
    \tilde z_{ij} = z_{ij} - m_{y_i} [j = y_i], \qquad
    \ell_i = w_{y_i} \, \mathrm{CE}(s \, \tilde z_i, y_i)

  The margin is subtracted from the true-class logit only, then all logits are multiplied by the
  scale ``s``. The logits are meant to come from a cosine (normalised) head, so they lie in
  ``[-1, 1]``; ``s = 30`` as in the reference. Reduce with :func:`weighted_mean`.

  Args:
    logits: ``[B, C]`` cosine similarities.
    labels: ``[B]`` integer class ids.
    margins: ``[C]`` per-class margins, e.g. :func:`ldam_margins`.
    scale: the logit scale ``s``.
    class_weights: ``[C]`` per-class weights (e.g. from DRW); None means ones.

  Returns:
    ``[B]`` per-example losses.
  """
  logits, _, onehot = _prepare(logits, labels)
  margins = jnp.asarray(margins, dtype=logits.dtype)
  if margins.shape != logits.shape[-1:]:
    raise ValueError(f"margins shape {margins.shape} must be ({logits.shape[-1]},).")
  adjusted = jnp.where(onehot, logits - margins, logits)
  ce = _ce_from_onehot(scale * adjusted, onehot)
  return _weighted(ce, _gather_weights(class_weights, onehot, logits.dtype))


def logit_adjusted_loss(logits: ArrayLike, labels: ArrayLike, *, log_prior: ArrayLike,
                        tau: float = 1.0, class_weights: ArrayLike | None = None) -> jax.Array:
  r"""Logit-adjusted softmax cross-entropy (Menon et al., ICLR 2021), unreduced.

  .. math::
    \ell_i = w_{y_i} \, \mathrm{CE}(z_i + \tau \log \pi, \; y_i)

  where ``log pi`` are the training log-priors (:func:`log_priors`). ``tau = 0`` is plain CE;
  ``tau = 1`` is :func:`balanced_softmax_loss`. Predict with the raw logits ``z`` at test time.
  Reduce with :func:`weighted_mean`.

  Args:
    logits: ``[B, C]`` unnormalised scores.
    labels: ``[B]`` integer class ids.
    log_prior: ``[C]`` log class priors.
    tau: temperature of the adjustment.
    class_weights: ``[C]`` per-class weights; None means ones.

  Returns:
    ``[B]`` per-example losses.
  """
  logits, _, onehot = _prepare(logits, labels)
  log_prior = jnp.asarray(log_prior, dtype=logits.dtype)
  if log_prior.shape != logits.shape[-1:]:
    raise ValueError(f"log_prior shape {log_prior.shape} must be ({logits.shape[-1]},).")
  ce = _ce_from_onehot(logits + tau * log_prior, onehot)
  return _weighted(ce, _gather_weights(class_weights, onehot, logits.dtype))


def balanced_softmax_loss(logits: ArrayLike, labels: ArrayLike, *, log_prior: ArrayLike,
                          class_weights: ArrayLike | None = None) -> jax.Array:
  r"""Balanced Softmax cross-entropy (Ren et al., NeurIPS 2020), unreduced.

  .. math::
    \ell_i = w_{y_i} \, \mathrm{CE}(z_i + \log \pi, \; y_i)
           = -w_{y_i} \log \frac{n_{y_i} e^{z_{i y_i}}}{\sum_j n_j e^{z_{ij}}}

  Identical to :func:`logit_adjusted_loss` with ``tau = 1``. Reduce with :func:`weighted_mean`.

  Args:
    logits: ``[B, C]`` unnormalised scores.
    labels: ``[B]`` integer class ids.
    log_prior: ``[C]`` log class priors (:func:`log_priors`).
    class_weights: ``[C]`` per-class weights; None means ones.

  Returns:
    ``[B]`` per-example losses.
  """
  return logit_adjusted_loss(logits, labels, log_prior=log_prior, tau=1.0,
                             class_weights=class_weights)


# ------------------------------------------------------------------------------------------------
# Reductions.
# ------------------------------------------------------------------------------------------------


def _mask(where: ArrayLike | None, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
  if where is None:
    return jnp.ones(shape, dtype)
  where = jnp.asarray(where)
  if where.shape != shape:
    raise ValueError(f"where shape {where.shape} must equal the per-example shape {shape}.")
  return where.astype(bool).astype(dtype)


def _safe_divide(num: jax.Array, den: jax.Array) -> jax.Array:
  nonzero = den != 0
  return jnp.where(nonzero, num / jnp.where(nonzero, den, 1.0), 0.0)


def weighted_mean(per_example: ArrayLike, labels: ArrayLike, *,
                  class_weights: ArrayLike | None = None,
                  where: ArrayLike | None = None) -> jax.Array:
  r"""PyTorch's weighted-CE mean: the sum of losses over the sum of the batch's class weights.

  .. math::
    L = \frac{\sum_i M_i \, \ell_i}{\sum_i M_i \, w_{y_i}}

  where ``l_i`` already includes ``w_{y_i}`` (the output of :func:`weighted_cross_entropy`,
  :func:`ldam_loss`, :func:`balanced_softmax_loss`, :func:`logit_adjusted_loss` with the same
  ``class_weights``) and ``M`` is the boolean mask ``where``. This is
  ``nn.CrossEntropyLoss(weight=w)``'s ``reduction='mean'``, the reduction the reference uses for
  CE, LDAM and (here) Balanced Softmax / logit adjustment. With ``class_weights=None`` it is the
  plain masked mean. Focal is *not* reduced this way: use :func:`masked_mean`.

  Returns 0 (with zero gradient) when no example is masked in, instead of PyTorch's NaN, so padded
  all-dummy batches are harmless.

  Args:
    per_example: ``[B]`` losses that already include ``w_{y_i}``.
    labels: ``[B]`` integer class ids (to look up ``w_{y_i}``; out-of-range ids weigh 0).
    class_weights: ``[C]`` the weights used in the loss; None means ones.
    where: ``[B]`` boolean mask of examples to include; None means all.

  Returns:
    scalar.
  """
  per_example = jnp.asarray(per_example)
  labels = jnp.asarray(labels)
  if labels.shape != per_example.shape:
    raise ValueError(f"labels shape {labels.shape} must equal per_example shape "
                     f"{per_example.shape}.")
  mask = _mask(where, per_example.shape, per_example.dtype)
  if class_weights is None:
    den_terms = mask
  else:
    w = jnp.asarray(class_weights, dtype=per_example.dtype)
    onehot = labels[..., None] == jnp.arange(w.shape[-1], dtype=labels.dtype)
    den_terms = mask * jnp.sum(jnp.where(onehot, w, 0.0), axis=-1)
  num = jnp.sum(jnp.where(mask > 0, per_example, 0.0))
  return _safe_divide(num, jnp.sum(den_terms))


def masked_mean(values: ArrayLike, where: ArrayLike | None = None) -> jax.Array:
  """Mean of ``values`` over the entries where ``where`` is True (all when None); 0 if none.

  The reduction of the reference's focal loss (``loss.mean()``), and of any unweighted loss.

  Args:
    values: ``[B]`` per-example values.
    where: ``[B]`` boolean mask; None means all.

  Returns:
    scalar.
  """
  values = jnp.asarray(values)
  mask = _mask(where, values.shape, values.dtype)
  num = jnp.sum(jnp.where(mask > 0, values, 0.0))
  return _safe_divide(num, jnp.sum(mask))
