"""The paper's two toy analyses as small numpy functions: closed forms, bounds, and simulators
that put numbers next to them.

Yang & Xu (NeurIPS 2020, arXiv 2006.07529) motivate both halves of the method with Gaussian
models simple enough to solve:

* **Theorem 1, imbalanced labels still help (semi-supervised).** Binary 1-D data,
  ``x | y=+1 ~ N(mu1, sigma^2)``, ``x | y=-1 ~ N(mu2, sigma^2)``, ``mu1 > mu2``; the Bayes boundary
  is ``(mu1 + mu2) / 2``. A base classifier trained on imbalanced labels pseudo-labels an unlabeled
  pool (with its own class imbalance). A pseudo-positive is a true positive with probability
  ``p``, a pseudo-negative a true negative with probability ``q``. The midpoint ``theta_hat`` of the
  two pseudo-class means concentrates, exponentially fast in the pool size, around
  ``(mu1 + mu2) / 2 + Delta (mu1 - mu2) / 2`` with ``Delta = p - q``: more unlabeled data shrinks
  the variance, and the remaining bias is set by the base classifier's imbalance in accuracy.
* **Theorems 2 and 3, self-supervision helps.** ``x | y=+1 ~ N(0, sigma1^2 I_d)`` and
  ``x | y=-1 ~ N(0, beta sigma1^2 I_d)`` with ``beta > 1`` (the paper takes ``beta > 3`` and
  negatives as the majority). Both classes are centred at 0, so every linear classifier on raw
  ``x`` errs at least 1/4 (Theorem 2) however many labels it sees. The label-free feature
  ``||x||^2`` (what the paper's abstract self-supervised task learns, up to ``k1 ||x||^2 + k2``)
  with a threshold set from the imbalanced labels errs exponentially little in ``d`` (Theorem 3).

The statements are the paper's, written in this module's notation (nothing here is a verbatim
quotation); each bound's docstring sketches a derivation that reproduces every constant. The
simulators draw every point as the models say, so they check the algebra rather than reuse it.
Every function validates its arguments and raises ValueError naming the argument and its range.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = [
  "PseudoLabelDraws", "SelfSupervisionDraws", "base_classifier_recalls", "best_linear_error",
  "boundary_centre", "columns", "linear_error", "linear_error_floor", "norm_threshold_error",
  "pseudo_label_bound", "pseudo_label_precisions", "simulate_pseudo_labels",
  "simulate_self_supervision", "ssl_error_bound", "ssl_failure_probability",
  "sweep_pseudo_labels", "sweep_self_supervision",
]

Seed = int | np.random.Generator
_MAX_CHUNK = 1 << 20  # points drawn at once by the Theorem 1 simulator (memory stays ~10s of MB)


# ----------------------------------------------------------------------------------------------
# Argument checks: a message names the argument, its value and the valid range.


def _fmt(x: float) -> str:
  return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"


def _check(name: str, value: ArrayLike, low: float, high: float, *, open_low: bool = False,
           open_high: bool = False) -> None:
  arr = np.asarray(value, dtype=float)
  bad = np.isnan(arr) | (arr < low) | (arr > high)
  if open_low or low == -math.inf:
    bad |= arr == low
  if open_high or high == math.inf:
    bad |= arr == high
  if np.any(bad):
    shown = value if arr.ndim == 0 else arr[bad].flat[0]
    left = "(" if open_low or low == -math.inf else "["
    right = ")" if open_high or high == math.inf else "]"
    raise ValueError(f"{name}={shown!r} is outside {left}{_fmt(low)}, {_fmt(high)}{right}.")


def _check_int(name: str, value: ArrayLike, low: int) -> None:
  arr = np.asarray(value)
  if not (np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)):
    raise ValueError(f"{name}={value!r} must be an integer (or integers) in [{low}, inf).")
  _check(name, value, low, math.inf)


def _rng(seed: Seed) -> np.random.Generator:
  if isinstance(seed, np.random.Generator):
    return seed
  return np.random.default_rng(seed)


def _pos_fraction(unlabeled_ratio: float) -> float:
  _check("unlabeled_ratio", unlabeled_ratio, 0.0, math.inf, open_low=True)
  return unlabeled_ratio / (1.0 + unlabeled_ratio)


# ----------------------------------------------------------------------------------------------
# Theorem 1: pseudo-labels from an imbalanced base classifier.


def boundary_centre(p: float, q: float, mu1: float = 1.0, mu2: float = -1.0) -> float:
  """Where ``theta_hat`` concentrates: ``(mu1 + mu2) / 2 + (p - q) (mu1 - mu2) / 2``.

  A pseudo-positive is a true positive with probability ``p``, so the pseudo-positive mean tends
  to ``p mu1 + (1 - p) mu2``; the pseudo-negative mean tends to ``q mu2 + (1 - q) mu1``. Their
  midpoint is the Bayes boundary moved by ``Delta (mu1 - mu2) / 2``: the accuracy imbalance
  ``Delta = p - q``, not the amount of unlabeled data, sets the bias.
  """
  _check("p", p, 0.0, 1.0)
  _check("q", q, 0.0, 1.0)
  _check("mu1 - mu2", mu1 - mu2, 0.0, math.inf, open_low=True)
  return 0.5 * (mu1 + mu2) + 0.5 * (p - q) * (mu1 - mu2)


def pseudo_label_bound(delta: ArrayLike, n_pos: ArrayLike, n_neg: ArrayLike, sigma: float = 1.0,
                       gap: float = 2.0) -> float | np.ndarray:
  """Theorem 1's bound on ``P(|theta_hat - centre| > delta)``, given the pool's counts.

  With ``n+`` pseudo-positives, ``n-`` pseudo-negatives and ``gap = mu1 - mu2``::

      2 exp(-2 delta^2 n+ n- / (9 sigma^2 (n+ + n-)))
    + 2 exp(-8 n+ delta^2 / (9 gap^2)) + 2 exp(-8 n- delta^2 / (9 gap^2))

  clipped at 1; the paper states it as ``|theta_hat - centre| <= delta`` with probability at least
  one minus this sum. Derivation: write ``theta_hat - centre = (gap/2)(p_bar - p) -
  (gap/2)(q_bar - q) + (sigma/2)(z_bar+ + z_bar-)``, where ``p_bar`` (``q_bar``) is the fraction of
  correct pseudo-positives (pseudo-negatives) and ``z_bar+-`` are means of standard normals. Give
  each term ``delta / 3``: the Gaussian term, ``N(0, sigma^2 (1/n+ + 1/n-) / 4)``, passes it with
  probability at most the first exponential (Chernoff); each Bernoulli mean moves by more than
  ``2 delta / (3 gap)`` with probability at most the others (Hoeffding); a union bound adds them.
  Broadcasts over array arguments.
  """
  _check("delta", delta, 0.0, math.inf, open_low=True)
  _check_int("n_pos", n_pos, 1)
  _check_int("n_neg", n_neg, 1)
  _check("sigma", sigma, 0.0, math.inf, open_low=True)
  _check("gap", gap, 0.0, math.inf, open_low=True)
  delta, n_pos, n_neg = (np.asarray(a, dtype=float) for a in (delta, n_pos, n_neg))
  gaussian = 2 * np.exp(-2 * delta**2 * n_pos * n_neg / (9 * sigma**2 * (n_pos + n_neg)))
  bernoulli = 2 * (np.exp(-8 * n_pos * delta**2 / (9 * gap**2))
                   + np.exp(-8 * n_neg * delta**2 / (9 * gap**2)))
  bound = np.minimum(gaussian + bernoulli, 1.0)
  return float(bound) if bound.ndim == 0 else bound


def base_classifier_recalls(p: float, q: float, unlabeled_ratio: float = 1.0
                            ) -> tuple[float, float, float]:
  """The base classifier behind precisions ``(p, q)`` on a pool with ``unlabeled_ratio``
  positives per negative: ``(recall_pos, recall_neg, pseudo_pos_fraction)``.

  With ``pi`` the pool's positive fraction, a share ``s`` of the pool is pseudo-positive where
  ``pi = s p + (1 - s)(1 - q)``; so ``(p, q)`` is reachable only when ``p + q > 1`` (better than
  chance) and ``1 - q < pi < p`` (both pseudo-classes non-empty). Then recall on the positives
  is ``s p / pi`` and on the negatives ``(1 - s) q / (1 - pi)``.
  """
  _check("p", p, 0.0, 1.0)
  _check("q", q, 0.0, 1.0)
  pi = _pos_fraction(unlabeled_ratio)
  if p + q <= 1:
    raise ValueError(f"p + q = {p + q:g} must exceed 1: pseudo-labels better than chance.")
  if not 1 - q < pi < p:
    raise ValueError(f"unlabeled_ratio={unlabeled_ratio!r} puts the pool's positive fraction "
                     f"{pi:g} outside (1 - q, p) = ({1 - q:g}, {p:g}): no base classifier has "
                     "these precisions on this pool.")
  s = (pi + q - 1) / (p + q - 1)
  return s * p / pi, (1 - s) * q / (1 - pi), s


def pseudo_label_precisions(recall_pos: float, recall_neg: float,
                            unlabeled_ratio: float = 1.0) -> tuple[float, float]:
  """``(p, q)`` of a base classifier with the given per-class recalls on a pool with
  ``unlabeled_ratio`` positives per negative (Bayes' rule).

  A classifier trained on imbalanced labels has a high recall on its majority class and a low one
  on its minority; how that turns into ``Delta = p - q`` depends on the unlabeled pool's own
  imbalance, which this makes explicit.
  """
  _check("recall_pos", recall_pos, 0.0, 1.0)
  _check("recall_neg", recall_neg, 0.0, 1.0)
  pi = _pos_fraction(unlabeled_ratio)
  called_pos = pi * recall_pos + (1 - pi) * (1 - recall_neg)
  called_neg = 1 - called_pos
  if called_pos == 0 or called_neg == 0:
    raise ValueError("recall_pos and recall_neg leave one pseudo-class empty; keep "
                     "recall_pos > 0 or recall_neg < 1, and recall_neg > 0 or recall_pos < 1.")
  return pi * recall_pos / called_pos, (1 - pi) * recall_neg / called_neg


@dataclasses.dataclass(frozen=True)
class PseudoLabelDraws:
  """Repeats of Theorem 1's experiment; every array has one entry per repeat.

  ``theta_hat`` is NaN in a repeat whose pool got no pseudo-positive or no pseudo-negative.
  """

  theta_hat: np.ndarray  # midpoint of the pseudo-positive and pseudo-negative means
  n_pos: np.ndarray  # pseudo-positives in the pool
  n_neg: np.ndarray  # pseudo-negatives in the pool
  p_hat: np.ndarray  # fraction of pseudo-positives that are true positives
  q_hat: np.ndarray  # fraction of pseudo-negatives that are true negatives
  centre: float  # boundary_centre(p, q, mu1, mu2)
  bayes: float  # (mu1 + mu2) / 2

  @property
  def deviation(self) -> np.ndarray:
    """``theta_hat - centre`` per repeat."""
    return self.theta_hat - self.centre


def simulate_pseudo_labels(seed: Seed, n: int, p: float, q: float, *,
                           unlabeled_ratio: float = 1.0, mu1: float = 1.0, mu2: float = -1.0,
                           sigma: float = 1.0, repeats: int = 1) -> PseudoLabelDraws:
  """Theorem 1's experiment, ``repeats`` times: draw ``n`` unlabeled points (each positive with
  probability ``unlabeled_ratio / (1 + unlabeled_ratio)``), pseudo-label them with a base
  classifier whose pseudo-positives are right with probability ``p`` and pseudo-negatives with
  probability ``q``, and estimate the boundary from the pseudo-labels alone.

  The base classifier keeps each point's true label with its class's recall
  (:func:`base_classifier_recalls`), independently of ``x``: the theorem's model, in which being
  mislabeled does not depend on where a point lies. Given the pseudo-labels, each pseudo-positive
  is then a true positive with probability exactly ``p``, as the theorem assumes.
  """
  rng = _rng(seed)
  _check_int("n", n, 2)
  _check_int("repeats", repeats, 1)
  _check("sigma", sigma, 0.0, math.inf, open_low=True)
  centre = boundary_centre(p, q, mu1, mu2)
  recall_pos, recall_neg, _ = base_classifier_recalls(p, q, unlabeled_ratio)
  pi = _pos_fraction(unlabeled_ratio)
  out = {k: np.empty(repeats) for k in ("theta_hat", "n_pos", "p_hat", "q_hat")}
  chunk = max(1, _MAX_CHUNK // n)
  for start in range(0, repeats, chunk):
    rows = slice(start, min(start + chunk, repeats))
    m = rows.stop - rows.start
    y = rng.random((m, n)) < pi  # true label is +1
    keep = rng.random((m, n)) < np.where(y, recall_pos, recall_neg)
    pseudo = y == keep  # pseudo-label +1: a kept positive or a flipped negative
    x = np.where(y, mu1, mu2) + sigma * rng.standard_normal((m, n))
    n_pos = pseudo.sum(axis=1)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
      mean_pos = np.where(pseudo, x, 0.0).sum(axis=1) / n_pos
      mean_neg = np.where(pseudo, 0.0, x).sum(axis=1) / n_neg
      out["p_hat"][rows] = (pseudo & y).sum(axis=1) / n_pos
      out["q_hat"][rows] = (~pseudo & ~y).sum(axis=1) / n_neg
    out["theta_hat"][rows] = 0.5 * (mean_pos + mean_neg)
    out["n_pos"][rows] = n_pos
  n_pos = out["n_pos"].astype(np.int64)
  return PseudoLabelDraws(theta_hat=out["theta_hat"], n_pos=n_pos, n_neg=n - n_pos,
                          p_hat=out["p_hat"], q_hat=out["q_hat"], centre=centre,
                          bayes=0.5 * (mu1 + mu2))


def _reachable(p: float, q: float, unlabeled_ratio: float) -> bool:
  pi = unlabeled_ratio / (1.0 + unlabeled_ratio)
  return p + q > 1 and 1 - q < pi < p


def sweep_pseudo_labels(seed: Seed, ns: Iterable[int], ps: Iterable[float], qs: Iterable[float],
                        unlabeled_ratios: Iterable[float] = (1.0,), *, delta: float = 0.2,
                        repeats: int = 200, mu1: float = 1.0, mu2: float = -1.0,
                        sigma: float = 1.0) -> list[dict]:
  """Theorem 1 over the grid ``ns x ps x qs x unlabeled_ratios``: one record per reachable
  setting (see :func:`base_classifier_recalls`; unreachable ones are left out), in grid order.

  Record keys: ``n, p, q, unlabeled_ratio, Delta, centre, bayes``; over the repeats with both
  pseudo-classes non-empty (``repeats``): ``theta_mean``, ``theta_std``, ``theta_se``,
  ``abs_deviation`` (mean ``|theta_hat - centre|``), ``boundary_error`` (mean
  ``|theta_hat - bayes|``), ``tail`` (frequency of ``|theta_hat - centre| > delta``) and ``bound``
  (Theorem 1's bound averaged over the repeats' counts, which bounds ``tail``'s expectation),
  ``n_pos`` and ``n_neg`` (mean counts), and ``delta``.
  """
  rng = _rng(seed)
  _check("delta", delta, 0.0, math.inf, open_low=True)
  ns, ps, qs, ratios = (list(a) for a in (ns, ps, qs, unlabeled_ratios))
  _check("ps", ps, 0.0, 1.0)
  _check("qs", qs, 0.0, 1.0)
  _check("unlabeled_ratios", ratios, 0.0, math.inf, open_low=True)
  _check_int("ns", ns, 2)
  grid = [g for g in itertools.product(ns, ps, qs, ratios) if _reachable(*g[1:])]
  if not grid:
    raise ValueError("no (p, q, unlabeled_ratio) in the grid is reachable: each needs p + q > 1 "
                     "and 1 - q < ratio / (1 + ratio) < p.")
  records = []
  for n, p, q, ratio in grid:
    draws = simulate_pseudo_labels(rng, n, p, q, unlabeled_ratio=ratio, mu1=mu1, mu2=mu2,
                                   sigma=sigma, repeats=repeats)
    ok = np.isfinite(draws.theta_hat)
    theta, dev = draws.theta_hat[ok], draws.deviation[ok]
    bound = pseudo_label_bound(delta, draws.n_pos[ok], draws.n_neg[ok], sigma, mu1 - mu2)
    std = float(theta.std(ddof=1)) if theta.size > 1 else math.nan
    records.append({
      "n": int(n), "p": float(p), "q": float(q), "unlabeled_ratio": float(ratio),
      "Delta": float(p - q), "centre": draws.centre, "bayes": draws.bayes,
      "repeats": int(ok.sum()), "theta_mean": float(theta.mean()), "theta_std": std,
      "theta_se": std / math.sqrt(theta.size), "abs_deviation": float(np.abs(dev).mean()),
      "boundary_error": float(np.abs(theta - draws.bayes).mean()),
      "tail": float(np.mean(np.abs(dev) > delta)), "bound": float(np.mean(bound)),
      "n_pos": float(draws.n_pos[ok].mean()), "n_neg": float(draws.n_neg[ok].mean()),
      "delta": float(delta),
    })
  return records


# ----------------------------------------------------------------------------------------------
# Theorems 2 and 3: two zero-mean Gaussians, linear classifiers and the ||x||^2 feature.


def linear_error(t: ArrayLike, beta: float, pos_prior: float = 0.5) -> float | np.ndarray:
  """Error of the linear classifier ``sign(<theta, x> + b)`` on raw ``x``, in which only
  ``t = b / (||theta|| sigma1)`` matters: ``p+ Phi(-t) + p- Phi(t / sqrt(beta))``.

  ``<theta, x>`` is ``N(0, ||theta||^2 sigma1^2)`` for a positive and has ``beta`` times that
  variance for a negative, in any dimension ``d``. ``t = +inf`` (``-inf``) calls everything
  positive (negative). Broadcasts over ``t``. ``pos_prior`` (``p+ = 1 - p-``) is the test
  distribution's share of positives; 1/2 is the balanced test set long-tail methods are scored on.
  """
  _check("beta", beta, 1.0, math.inf, open_low=True)
  _check("pos_prior", pos_prior, 0.0, 1.0)
  t = np.asarray(t, dtype=float)
  err = pos_prior * special.ndtr(-t) + (1 - pos_prior) * special.ndtr(t / math.sqrt(beta))
  return float(err) if err.ndim == 0 else err


def linear_error_floor(pos_prior: float = 0.5) -> float:
  """Theorem 2's lower bound on every linear classifier's error: ``min(p+, p-) / 2``.

  A negative's ``<theta, x>`` is symmetric about 0, so with ``b >= 0`` at least half the
  negatives are called positive: error ``>= p- / 2``, the paper's 1/4 when negatives are the
  majority (``p- >= 1/2``; the paper states it for ``b > 0``). With ``b <= 0`` the same holds for
  the positives, so under a balanced test prior every linear classifier errs at least 1/4.
  """
  _check("pos_prior", pos_prior, 0.0, 1.0)
  return 0.5 * min(pos_prior, 1 - pos_prior)


def best_linear_error(beta: float, pos_prior: float = 0.5) -> tuple[float, float]:
  """The smallest error any linear classifier on raw ``x`` reaches, and its ``t``.

  Setting the derivative of :func:`linear_error` to zero gives
  ``t^2 = 2 log(p+ sqrt(beta) / p-) / (1 - 1 / beta)``; the minimum is there or at
  ``t = +-inf`` (a constant prediction). Independent of ``d`` and of the training labels: no
  amount of labeled data takes a linear classifier below it. For a balanced prior it is
  ``(Phi(-t*) + Phi(t* / sqrt(beta))) / 2 > 1/4``, tending to 1/4 as ``beta`` grows.
  """
  _check("beta", beta, 1.0, math.inf, open_low=True)
  _check("pos_prior", pos_prior, 0.0, 1.0)
  candidates = [-math.inf, math.inf]
  if 0 < pos_prior < 1:
    t2 = 2 * math.log(pos_prior * math.sqrt(beta) / (1 - pos_prior)) / (1 - 1 / beta)
    if t2 > 0:
      candidates += [math.sqrt(t2), -math.sqrt(t2)]
  errors = [linear_error(t, beta, pos_prior) for t in candidates]
  i = int(np.argmin(errors))
  return errors[i], candidates[i]


def norm_threshold_error(threshold: ArrayLike, d: int, beta: float, sigma1: float = 1.0,
                         pos_prior: float = 0.5) -> float | np.ndarray:
  """Exact error of "positive iff ``||x||^2 < threshold``" (the self-supervised feature with a
  threshold): ``p+ P(sigma1^2 chi2_d >= threshold) + p- P(beta sigma1^2 chi2_d < threshold)``,
  from the regularised incomplete gamma function. Broadcasts over ``threshold``.
  """
  _check_int("d", d, 1)
  _check("beta", beta, 1.0, math.inf, open_low=True)
  _check("sigma1", sigma1, 0.0, math.inf, open_low=True)
  _check("pos_prior", pos_prior, 0.0, 1.0)
  thr = np.maximum(np.asarray(threshold, dtype=float), 0.0)
  miss_pos = special.gammaincc(d / 2, thr / (2 * sigma1**2))
  miss_neg = special.gammainc(d / 2, thr / (2 * beta * sigma1**2))
  err = pos_prior * miss_pos + (1 - pos_prior) * miss_neg
  return float(err) if err.ndim == 0 else err


def _check_ssl_delta(delta: float, beta: float) -> None:
  _check("beta", beta, 1.0, math.inf, open_low=True)
  _check("delta", delta, 0.0, (beta - 1) / (beta + 1), open_low=True, open_high=True)


def ssl_error_bound(d: ArrayLike, beta: float, delta: float,
                    pos_prior: float = 0.5) -> float | np.ndarray:
  """Theorem 3's bound on the ``||x||^2`` classifier's error when its threshold was set within
  ``delta`` (relative) of both class means (see :func:`ssl_failure_probability`).

  With ``s = beta - 1 - (1 + beta) delta`` (positive for ``delta < (beta - 1) / (beta + 1)``)::

      p+ exp(-d s^2 / 32) + p- exp(-d s^2 / (32 beta^2))   if delta >= (beta - 3) / (beta + 1)
      p+ exp(-d s / 16)   + p- exp(-d s^2 / (32 beta^2))   otherwise.

  Derivation: on that event the threshold ``b`` lies in ``d sigma1^2 (1 + beta)(1 -+ delta) / 2``,
  so a positive errs only if ``chi2_d / d - 1 >= s / 2`` and a negative only if
  ``chi2_d / d - 1 <= -s / (2 beta)``. The chi-square tails ``P(chi2_d / d - 1 >= u) <=
  exp(-d u^2 / 8)`` for ``u <= 1`` and ``exp(-d u / 8)`` for ``u > 1`` (sub-exponential with
  parameters (2, 4) per coordinate), and the same ``exp(-d u^2 / 8)`` for the lower tail, give the
  two cases (``s / 2 <= 1`` exactly when ``delta >= (beta - 3) / (beta + 1)``). Exponentially small
  in ``d``; it holds for any test prior ``pos_prior``. Broadcasts over ``d``.
  """
  _check_int("d", d, 1)
  _check_ssl_delta(delta, beta)
  _check("pos_prior", pos_prior, 0.0, 1.0)
  d = np.asarray(d, dtype=float)
  s = beta - 1 - (1 + beta) * delta
  pos = math.exp(-s**2 / 32) if s <= 2 else math.exp(-s / 16)
  bound = pos_prior * pos**d + (1 - pos_prior) * np.exp(-d * s**2 / (32 * beta**2))
  return float(bound) if bound.ndim == 0 else bound


def ssl_failure_probability(d: ArrayLike, n_pos: ArrayLike, n_neg: ArrayLike,
                            delta: float) -> float | np.ndarray:
  """Theorem 3's chance that the threshold is not within ``delta`` of both class means:
  ``2 exp(-n- d delta^2 / 8) + 2 exp(-n+ d delta^2 / 8)`` (clipped at 1), for ``n+`` positive
  and ``n-`` negative training points.

  The mean of ``||x||^2 / sigma1^2`` over the ``n+`` positives is ``chi2_{n+ d} / n+``, and
  ``P(|chi2_k / k - 1| >= delta) <= 2 exp(-k delta^2 / 8)`` for ``delta`` in (0, 1); likewise for
  the negatives with ``beta sigma1^2``. Few minority labels are compensated by dimension.
  """
  _check_int("d", d, 1)
  _check_int("n_pos", n_pos, 1)
  _check_int("n_neg", n_neg, 1)
  _check("delta", delta, 0.0, 1.0, open_low=True, open_high=True)
  d, n_pos, n_neg = (np.asarray(a, dtype=float) for a in (d, n_pos, n_neg))
  prob = np.minimum(2 * np.exp(-n_neg * d * delta**2 / 8) + 2 * np.exp(-n_pos * d * delta**2 / 8),
                    1.0)
  return float(prob) if prob.ndim == 0 else prob


@dataclasses.dataclass(frozen=True)
class SelfSupervisionDraws:
  """Repeats of the Theorem 2/3 experiment; every array has one entry per repeat.

  Errors are under the test prior ``pos_prior``. ``*_test_error`` are NaN when ``n_test`` is 0.
  """

  threshold: np.ndarray  # b: midpoint of the mean ||x||^2 of the labeled positives and negatives
  pos_scale: np.ndarray  # mean ||x||^2 / (d sigma1^2) over the labeled positives (tends to 1)
  neg_scale: np.ndarray  # mean ||x||^2 / (d beta sigma1^2) over the labeled negatives (tends to 1)
  ssl_error: np.ndarray  # exact error of "positive iff ||x||^2 < b"
  ssl_test_error: np.ndarray  # the same on fresh test points
  linear_t: np.ndarray  # b / (||theta|| sigma1) of the least-squares linear classifier on raw x
  linear_error: np.ndarray  # its exact error
  linear_test_error: np.ndarray  # the same on fresh test points


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
  """``(w, b)`` minimising ``||x w + b - y||^2``: the minimum-norm solution when there are fewer
  points than unknowns. Normal equations in the smaller of the two dimensions, with a ridge of
  1e-10 of the mean diagonal for the nearly square case.
  """
  a = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  if a.shape[0] >= a.shape[1]:
    gram = a.T @ a
    coef = np.linalg.solve(gram + 1e-10 * np.trace(gram) / len(gram) * np.eye(len(gram)), a.T @ y)
  else:
    gram = a @ a.T
    coef = a.T @ np.linalg.solve(gram + 1e-10 * np.trace(gram) / len(gram) * np.eye(len(gram)), y)
  return coef[:-1], float(coef[-1])


def simulate_self_supervision(seed: Seed, d: int, n_pos: int, n_neg: int, *, beta: float = 4.0,
                              sigma1: float = 1.0, pos_prior: float = 0.5, repeats: int = 1,
                              n_test: int = 0) -> SelfSupervisionDraws:
  """The Theorem 2/3 experiment, ``repeats`` times: draw ``n_pos`` positives from
  ``N(0, sigma1^2 I_d)`` and ``n_neg`` negatives from ``N(0, beta sigma1^2 I_d)``, then

  * fit a linear classifier on raw ``x`` by least squares on +-1 labels (with intercept), what a
    supervised learner does with the imbalanced labels; and
  * set the threshold of the ``||x||^2`` classifier to the midpoint of the two labeled classes'
    mean ``||x||^2`` (the paper's rule; a feature ``k1 ||x||^2 + k2`` gives the same classifier).

  Errors are exact (:func:`linear_error`, :func:`norm_threshold_error`) and, with ``n_test``
  fresh points per class, also measured.
  """
  rng = _rng(seed)
  _check_int("d", d, 1)
  _check_int("n_pos", n_pos, 1)
  _check_int("n_neg", n_neg, 1)
  _check_int("repeats", repeats, 1)
  _check_int("n_test", n_test, 0)
  _check("beta", beta, 1.0, math.inf, open_low=True)
  _check("sigma1", sigma1, 0.0, math.inf, open_low=True)
  _check("pos_prior", pos_prior, 0.0, 1.0)
  sd_neg = sigma1 * math.sqrt(beta)
  labels = np.concatenate([np.ones(n_pos), -np.ones(n_neg)])
  out = {f.name: np.full(repeats, np.nan) for f in dataclasses.fields(SelfSupervisionDraws)}
  for r in range(repeats):
    x_pos = sigma1 * rng.standard_normal((n_pos, d))
    x_neg = sd_neg * rng.standard_normal((n_neg, d))
    z_pos, z_neg = np.sum(x_pos**2, axis=1), np.sum(x_neg**2, axis=1)
    threshold = 0.5 * (z_pos.mean() + z_neg.mean())
    out["threshold"][r] = threshold
    out["pos_scale"][r] = z_pos.mean() / (d * sigma1**2)
    out["neg_scale"][r] = z_neg.mean() / (d * sd_neg**2)
    out["ssl_error"][r] = norm_threshold_error(threshold, d, beta, sigma1, pos_prior)
    w, b = _least_squares(np.concatenate([x_pos, x_neg]), labels)
    scale = np.linalg.norm(w) * sigma1
    t = b / scale if scale > 0 else math.copysign(math.inf, b)
    out["linear_t"][r] = t
    out["linear_error"][r] = linear_error(t, beta, pos_prior)
    if n_test:
      test_pos = sigma1 * rng.standard_normal((n_test, d))
      test_neg = sd_neg * rng.standard_normal((n_test, d))
      out["ssl_test_error"][r] = (
        pos_prior * np.mean(np.sum(test_pos**2, axis=1) >= threshold)
        + (1 - pos_prior) * np.mean(np.sum(test_neg**2, axis=1) < threshold))
      out["linear_test_error"][r] = (pos_prior * np.mean(test_pos @ w + b <= 0)
                                     + (1 - pos_prior) * np.mean(test_neg @ w + b > 0))
  return SelfSupervisionDraws(**out)


def sweep_self_supervision(seed: Seed, ds: Iterable[int], imbalance_ratios: Iterable[float], *,
                           n_train: int = 220, beta: float = 4.0, sigma1: float = 1.0,
                           delta: float | None = None, pos_prior: float = 0.5,
                           repeats: int = 50, n_test: int = 0) -> list[dict]:
  """Theorems 2 and 3 over ``ds x imbalance_ratios``: ``n_train`` labeled points split as
  ``n_neg / n_pos = ratio`` (negatives the majority, as in the paper), one record per setting.

  Record keys: ``d, ratio, n_pos, n_neg``; means over the repeats of ``ssl_error``,
  ``ssl_test_error``, ``linear_error`` and ``linear_test_error``; ``ssl_error_max``;
  ``ssl_bound`` (:func:`ssl_error_bound` at ``delta``), ``failure`` (its
  :func:`ssl_failure_probability`), ``in_event`` (fraction of repeats whose threshold was within
  ``delta`` of both class means), ``best_linear`` (:func:`best_linear_error`), ``floor``
  (:func:`linear_error_floor`) and ``delta``. ``delta`` defaults to half its range,
  ``(beta - 1) / (2 (beta + 1))``.
  """
  rng = _rng(seed)
  _check_int("n_train", n_train, 2)
  _check("beta", beta, 1.0, math.inf, open_low=True)
  if delta is None:
    delta = 0.5 * (beta - 1) / (beta + 1)
  _check_ssl_delta(delta, beta)
  best, _ = best_linear_error(beta, pos_prior)
  records = []
  for d, ratio in itertools.product(ds, imbalance_ratios):
    _check("ratio", ratio, 1.0, math.inf)
    n_pos = int(round(n_train / (1 + ratio)))
    if not 1 <= n_pos < n_train:
      raise ValueError(f"ratio={ratio!r} leaves n_pos={n_pos} of n_train={n_train}; it must be "
                       "in [1, n_train): raise n_train or lower the ratio.")
    n_neg = n_train - n_pos
    draws = simulate_self_supervision(rng, d, n_pos, n_neg, beta=beta, sigma1=sigma1,
                                      pos_prior=pos_prior, repeats=repeats, n_test=n_test)
    in_event = ((np.abs(draws.pos_scale - 1) <= delta) & (np.abs(draws.neg_scale - 1) <= delta))
    records.append({
      "d": int(d), "ratio": float(ratio), "n_pos": n_pos, "n_neg": n_neg,
      "ssl_error": float(draws.ssl_error.mean()), "ssl_error_max": float(draws.ssl_error.max()),
      "ssl_test_error": float(np.mean(draws.ssl_test_error)),
      "linear_error": float(draws.linear_error.mean()),
      "linear_test_error": float(np.mean(draws.linear_test_error)),
      "ssl_bound": ssl_error_bound(d, beta, delta, pos_prior),
      "failure": ssl_failure_probability(d, n_pos, n_neg, delta),
      "in_event": float(in_event.mean()), "best_linear": best,
      "floor": linear_error_floor(pos_prior), "delta": float(delta),
    })
  return records


def columns(records: Sequence[Mapping]) -> dict[str, np.ndarray]:
  """Records (from the sweeps) as one array per key, for plotting."""
  if not records:
    return {}
  return {key: np.array([r[key] for r in records]) for key in records[0]}
