"""The paper's toy analyses (lt_jax/theory.py) against expectations computed here: closed forms,
exact mixtures and chi-square tails from scipy.stats, and sampling; and the theory notebook run
as written with its tiny setting."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats
from test_notebook import run_tiny

from lt_jax import theory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "colab", "theory.ipynb")


def _exact_tail(delta: float, n_pos: int, n_neg: int, p: float, q: float, sigma: float,
                gap: float) -> float:
  """P(|theta_hat - centre| > delta) given the counts, summed exactly over the numbers of correct
  pseudo-labels: theta_hat - centre = (gap/2)(k+/n+ - p) - (gap/2)(k-/n- - q) + N(0, v)."""
  k_pos, k_neg = np.arange(n_pos + 1), np.arange(n_neg + 1)
  weight = np.outer(stats.binom.pmf(k_pos, n_pos, p), stats.binom.pmf(k_neg, n_neg, q))
  shift = 0.5 * gap * ((k_pos / n_pos - p)[:, None] - (k_neg / n_neg - q)[None, :])
  sd = 0.5 * sigma * math.sqrt(1 / n_pos + 1 / n_neg)
  tail = stats.norm.sf((delta - shift) / sd) + stats.norm.cdf((-delta - shift) / sd)
  return float(np.sum(weight * tail))


# ----------------------------------------------------------------------------------------------
# Theorem 1


@pytest.mark.parametrize("p, q, ratio", [(0.9, 0.7, 1.0), (0.95, 0.6, 3.0), (0.7, 0.9, 0.5)])
def test_theta_hat_centres_on_the_closed_form(p, q, ratio):
  mu1, mu2, sigma, n, repeats = 3.0, 0.5, 1.5, 200, 3000
  gap = mu1 - mu2
  draws = theory.simulate_pseudo_labels(np.random.default_rng(1), n, p, q, unlabeled_ratio=ratio,
                                        mu1=mu1, mu2=mu2, sigma=sigma, repeats=repeats)
  theta = draws.theta_hat
  assert np.all(np.isfinite(theta))
  centre = (mu1 + mu2) / 2 + (p - q) * gap / 2
  assert draws.centre == pytest.approx(centre)
  se = theta.std(ddof=1) / math.sqrt(repeats)
  assert abs(theta.mean() - centre) < 4 * se
  assert abs(theta.mean() - (mu1 + mu2) / 2) > 20 * se  # the bias Delta (mu1 - mu2) / 2 is real
  # Spread: given the counts, 4 Var = (sigma^2 + gap^2 p(1-p)) / n+ + (sigma^2 + gap^2 q(1-q)) / n-.
  var = np.mean(0.25 * ((sigma**2 + gap**2 * p * (1 - p)) / draws.n_pos
                        + (sigma**2 + gap**2 * q * (1 - q)) / draws.n_neg))
  assert theta.var(ddof=1) == pytest.approx(var, rel=5 * math.sqrt(2 / (repeats - 1)))
  # The pseudo-labels have the precisions asked for, on a pool of the asked-for imbalance.
  pooled_p = np.sum(draws.p_hat * draws.n_pos) / np.sum(draws.n_pos)
  pooled_q = np.sum(draws.q_hat * draws.n_neg) / np.sum(draws.n_neg)
  assert abs(pooled_p - p) < 4 * math.sqrt(p * (1 - p) / np.sum(draws.n_pos))
  assert abs(pooled_q - q) < 4 * math.sqrt(q * (1 - q) / np.sum(draws.n_neg))
  pi = ratio / (1 + ratio)
  share = (pi + q - 1) / (p + q - 1)  # pi = share * p + (1 - share)(1 - q)
  assert abs(draws.n_pos.mean() / n - share) < 4 * math.sqrt(share * (1 - share) / (n * repeats))


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.5])
def test_equal_precisions_give_an_unbiased_boundary(ratio):
  mu1, mu2, repeats = 2.0, -1.0, 4000
  draws = theory.simulate_pseudo_labels(7, 100, 0.8, 0.8, unlabeled_ratio=ratio, mu1=mu1,
                                        mu2=mu2, repeats=repeats)
  assert draws.centre == draws.bayes == 0.5
  theta = draws.theta_hat[np.isfinite(draws.theta_hat)]
  assert theta.size > 0.99 * repeats
  assert abs(theta.mean() - 0.5) < 4 * theta.std(ddof=1) / math.sqrt(theta.size)


def test_simulated_tail_matches_the_exact_mixture():
  p, q, sigma, gap, delta, repeats = 0.9, 0.7, 1.0, 2.0, 0.15, 2000
  draws = theory.simulate_pseudo_labels(3, 60, p, q, repeats=repeats)
  ok = np.isfinite(draws.theta_hat)
  pairs, counts = np.unique(np.stack([draws.n_pos[ok], draws.n_neg[ok]]), axis=1,
                            return_counts=True)
  expected = sum(c * _exact_tail(delta, a, b, p, q, sigma, gap)
                 for (a, b), c in zip(pairs.T, counts)) / counts.sum()
  assert 0.05 < expected < 0.95  # a measurable probability
  freq = np.mean(np.abs(draws.deviation[ok]) > delta)
  assert abs(freq - expected) < 4 * math.sqrt(expected * (1 - expected) / ok.sum())


@pytest.mark.parametrize("n, p, q, delta", [(200, 0.8, 0.8, 0.6), (400, 0.9, 0.7, 0.4),
                                            (1000, 0.95, 0.6, 0.3), (60, 0.9, 0.8, 1.0)])
def test_deviation_frequency_stays_under_the_bound(n, p, q, delta):
  draws = theory.simulate_pseudo_labels(11, n, p, q, repeats=2000)
  bound = theory.pseudo_label_bound(delta, draws.n_pos, draws.n_neg, sigma=1.0, gap=2.0)
  assert np.mean(bound) < 0.5  # the bound says something here
  assert np.mean(np.abs(draws.deviation) > delta) <= np.mean(bound)


def test_pseudo_label_bound_is_the_stated_formula_and_holds_exactly():
  delta, n_pos, n_neg, sigma, gap = 0.3, 150, 450, 1.2, 2.5
  stated = (2 * math.exp(-2 * delta**2 / (9 * sigma**2) * n_pos * n_neg / (n_pos + n_neg))
            + 2 * math.exp(-8 * n_pos * delta**2 / (9 * gap**2))
            + 2 * math.exp(-8 * n_neg * delta**2 / (9 * gap**2)))
  assert theory.pseudo_label_bound(delta, n_pos, n_neg, sigma, gap) == pytest.approx(stated)
  assert theory.pseudo_label_bound(0.01, 5, 5) == 1.0  # vacuous, clipped
  falling = theory.pseudo_label_bound(0.3, np.array([200, 400, 800]), np.array([200, 400, 800]))
  assert np.all(np.diff(falling) < 0)
  for delta, n_pos, n_neg, p, q in [(0.3, 40, 80, 0.9, 0.7), (0.6, 30, 30, 0.8, 0.8),
                                    (0.5, 100, 20, 0.95, 0.6)]:
    bound = theory.pseudo_label_bound(delta, n_pos, n_neg, 1.0, 2.0)
    assert _exact_tail(delta, n_pos, n_neg, p, q, 1.0, 2.0) <= bound


def test_recalls_and_precisions_invert_each_other():
  for p, q, ratio in [(0.9, 0.7, 1.0), (0.95, 0.6, 3.0), (0.7, 0.9, 0.5), (1.0, 1.0, 4.0)]:
    recall_pos, recall_neg, share = theory.base_classifier_recalls(p, q, ratio)
    assert 0 <= recall_pos <= 1 and 0 <= recall_neg <= 1
    assert theory.pseudo_label_precisions(recall_pos, recall_neg, ratio) == pytest.approx((p, q))
    assert share * p + (1 - share) * (1 - q) == pytest.approx(ratio / (1 + ratio))


def test_sweep_keeps_reachable_settings_in_grid_order():
  rows = theory.sweep_pseudo_labels(0, [50], [0.9, 0.6], [0.7], [1.0, 9.0], delta=0.5, repeats=50)
  assert [(r["p"], r["unlabeled_ratio"]) for r in rows] == [(0.9, 1.0), (0.6, 1.0)]
  assert rows[0]["Delta"] == pytest.approx(0.2) and rows[0]["centre"] == pytest.approx(0.2)
  assert all(r["tail"] <= r["bound"] for r in rows)
  assert theory.columns(rows)["n"].tolist() == [50, 50]
  with pytest.raises(ValueError, match="reachable"):
    theory.sweep_pseudo_labels(0, [50], [0.6], [0.7], [9.0])


# ----------------------------------------------------------------------------------------------
# Theorems 2 and 3


@pytest.mark.parametrize("beta", [1.5, 4.0, 16.0, 1e4])
def test_no_linear_classifier_beats_a_quarter(beta):
  t = np.linspace(-40, 40, 400_001)
  grid = 0.5 * stats.norm.cdf(-t) + 0.5 * stats.norm.cdf(t / math.sqrt(beta))
  err, _ = theory.best_linear_error(beta)
  assert err == pytest.approx(grid.min(), abs=1e-7)
  assert theory.linear_error_floor() == 0.25
  assert err >= 0.25


def test_linear_floor_with_imbalanced_prior():
  # Negatives the majority (p- = 0.8) and b > 0, as in the paper: error >= p- / 2 >= 1/4.
  t = np.linspace(0, 40, 10_001)
  assert np.min(theory.linear_error(t, 4.0, pos_prior=0.2)) >= 0.4
  assert theory.best_linear_error(4.0, 0.2)[0] >= theory.linear_error_floor(0.2) == 0.1
  errors = [theory.best_linear_error(beta)[0] for beta in (4.0, 1e2, 1e4, 1e8)]
  assert np.all(np.diff(errors) < 0) and errors[-1] < 0.26  # tends to 1/4 as beta grows


@pytest.mark.parametrize("d", [1, 8, 64])
def test_linear_error_formula_matches_sampling_in_any_dimension(d):
  rng = np.random.default_rng(d)
  beta, sigma1, n = 4.0, 1.3, 20_000
  theta = rng.standard_normal(d)
  b = 0.7 * np.linalg.norm(theta)
  x_pos = sigma1 * rng.standard_normal((n, d))
  x_neg = 2.0 * sigma1 * rng.standard_normal((n, d))
  sampled = 0.5 * np.mean(x_pos @ theta + b <= 0) + 0.5 * np.mean(x_neg @ theta + b > 0)
  exact = theory.linear_error(b / (np.linalg.norm(theta) * sigma1), beta)
  assert abs(sampled - exact) < 0.01
  assert sampled > 0.25 - 0.01


@pytest.mark.parametrize("d", [2, 16, 64])
def test_trained_linear_classifier_errs_at_least_a_quarter(d):
  draws = theory.simulate_self_supervision(5, d, 10, 100, beta=4.0, repeats=3, n_test=4000)
  best, _ = theory.best_linear_error(4.0)
  assert np.all(draws.linear_error >= best - 1e-12)
  assert np.all(draws.linear_test_error > 0.25 - 0.02)
  np.testing.assert_allclose(draws.linear_test_error, draws.linear_error, atol=0.03)


def test_norm_threshold_error_matches_chi_square_and_sampling():
  d, beta, sigma1, threshold, prior = 10, 4.0, 1.5, 25.0, 0.3
  expected = (prior * stats.chi2.sf(threshold / sigma1**2, d)
              + (1 - prior) * stats.chi2.cdf(threshold / (beta * sigma1**2), d))
  got = theory.norm_threshold_error(threshold, d, beta, sigma1, pos_prior=prior)
  assert got == pytest.approx(expected, rel=1e-9)
  draws = theory.simulate_self_supervision(2, 4, 20, 200, beta=beta, repeats=4, n_test=5000)
  np.testing.assert_allclose(draws.ssl_test_error, draws.ssl_error, atol=0.03)


@pytest.mark.parametrize("beta, delta", [(4.0, 0.3), (4.0, 0.05), (9.0, 0.2), (9.0, 0.7),
                                         (2.0, 0.2)])
def test_ssl_bound_covers_every_threshold_in_the_band(beta, delta):
  """On the event, the threshold is in d sigma1^2 (1 + beta)(1 -+ delta) / 2; the exact error
  there (chi-square tails) never exceeds the bound, in both of the bound's cases."""
  s = beta - 1 - (1 + beta) * delta
  for d in (1, 4, 16, 64, 256, 1024):
    band = d * (1 + beta) / 2 * np.linspace(1 - delta, 1 + delta, 201)
    exact = 0.5 * stats.chi2.sf(band, d) + 0.5 * stats.chi2.cdf(band / beta, d)
    bound = theory.ssl_error_bound(d, beta, delta)
    pos = math.exp(-d * s**2 / 32) if s <= 2 else math.exp(-d * s / 16)
    assert bound == pytest.approx(0.5 * pos + 0.5 * math.exp(-d * s**2 / (32 * beta**2)))
    assert exact.max() <= bound


def test_norm_feature_error_is_below_the_bound_and_falls_with_d():
  rng = np.random.default_rng(4)
  beta, delta, n_pos, n_neg, repeats = 4.0, 0.3, 20, 200, 20
  means = []
  for d in (4, 16, 64, 128):
    draws = theory.simulate_self_supervision(rng, d, n_pos, n_neg, beta=beta, repeats=repeats)
    in_event = (np.abs(draws.pos_scale - 1) <= delta) & (np.abs(draws.neg_scale - 1) <= delta)
    assert np.all(draws.ssl_error[in_event] <= theory.ssl_error_bound(d, beta, delta))
    failure = theory.ssl_failure_probability(d, n_pos, n_neg, delta)
    assert failure == pytest.approx(min(1.0, 2 * math.exp(-n_neg * d * delta**2 / 8)
                                        + 2 * math.exp(-n_pos * d * delta**2 / 8)))
    assert 1 - in_event.mean() <= failure + 4 * math.sqrt(0.25 / repeats)
    means.append(draws.ssl_error.mean())
  assert np.all(np.diff(means) < 0)
  assert means[-1] < 1e-3 < 0.25 <= theory.best_linear_error(beta)[0]


# ----------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize("call, message", [
  (lambda: theory.simulate_pseudo_labels(0, 0, 0.9, 0.7), r"n=0 is outside \[2, inf\)"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 1.5, 0.7), r"p=1.5 is outside \[0, 1\]"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 0.9, -0.1), r"q=-0.1 is outside \[0, 1\]"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 0.9, 0.7, sigma=0.0),
   r"sigma=0.0 is outside \(0, inf\)"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 0.9, 0.7, repeats=0),
   r"repeats=0 is outside \[1, inf\)"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 0.9, 0.7, unlabeled_ratio=9.0),
   r"unlabeled_ratio=9.0 .* outside \(1 - q, p\)"),
  (lambda: theory.simulate_pseudo_labels(0, 10, 0.4, 0.5), r"p \+ q = 0.9 must exceed 1"),
  (lambda: theory.pseudo_label_bound(0.0, 10, 10), r"delta=0.0 is outside \(0, inf\)"),
  (lambda: theory.pseudo_label_bound(0.1, 0, 10), r"n_pos=0 is outside \[1, inf\)"),
  (lambda: theory.pseudo_label_bound(0.1, 10, 2.5), r"n_neg=2.5 must be an integer"),
  (lambda: theory.ssl_error_bound(16, 4.0, 0.7), r"delta=0.7 is outside \(0, 0.6\)"),
  (lambda: theory.ssl_error_bound(16, 1.0, 0.1), r"beta=1.0 is outside \(1, inf\)"),
  (lambda: theory.ssl_error_bound(0, 4.0, 0.1), r"d=0 is outside \[1, inf\)"),
  (lambda: theory.linear_error(0.0, 4.0, pos_prior=1.2), r"pos_prior=1.2 is outside \[0, 1\]"),
  (lambda: theory.simulate_self_supervision(0, 8, 0, 10), r"n_pos=0 is outside \[1, inf\)"),
  (lambda: theory.simulate_self_supervision(0, 8, 5, 10, sigma1=-1.0),
   r"sigma1=-1.0 is outside \(0, inf\)"),
  (lambda: theory.sweep_self_supervision(0, [8], [500.0]), r"ratio=500.0 leaves n_pos=0"),
])
def test_bad_arguments_name_the_argument_and_range(call, message):
  with pytest.raises(ValueError, match=message):
    call()


# ----------------------------------------------------------------------------------------------
# The notebook


def test_theory_notebook_runs_with_the_tiny_setting(tmp_path, monkeypatch):
  results = run_tiny(NOTEBOOK, tmp_path, monkeypatch)["results"]
  names = ("theorem1_pseudo_labels.png", "theorem1_unlabeled_imbalance.png",
           "theorem3_self_supervision.png")
  assert sorted(results["figures"]) == sorted(str(tmp_path / name) for name in names)
  assert all((tmp_path / name).stat().st_size > 0 for name in names)
  for r in results["pseudo_labels"]:
    assert r["tail"] <= r["bound"]
    assert abs(r["theta_mean"] - r["centre"]) < 5 * r["theta_se"]
  for r in results["unlabeled_imbalance"]:
    assert r["centre"] == pytest.approx(r["Delta"])  # mu1 = 1, mu2 = -1
  ssl = results["self_supervision"]
  for r in ssl:
    assert r["linear_error"] >= r["best_linear"] >= r["floor"] == 0.25
  for ratio in {r["ratio"] for r in ssl}:
    errors = [r["ssl_error"] for r in sorted(ssl, key=lambda r: r["d"]) if r["ratio"] == ratio]
    assert np.all(np.diff(errors) < 0) and errors[-1] < 0.25
