"""The Colab notebooks run, as written, on this CPU with their tiny settings."""

import json
import os

import numpy as np
import pytest
from test_pipeline import assert_same_tree
from test_sources import _write_cifar_pickle

from lt_jax.checkpoint import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "colab", "lt_jax_semi.ipynb")
BENCHMARK_NOTEBOOK = os.path.join(ROOT, "colab", "benchmark_losses.ipynb")
QUICKSTART_NOTEBOOK = os.path.join(ROOT, "colab", "quickstart.ipynb")
SSP_NOTEBOOK = os.path.join(ROOT, "colab", "ssp.ipynb")


def code_cells(path=NOTEBOOK):
  with open(path) as f:
    notebook = json.load(f)
  assert notebook["nbformat"] == 4
  for cell in notebook["cells"]:
    if cell["cell_type"] == "code":
      assert cell["execution_count"] is None and cell["outputs"] == []  # Stored stripped.
      # Shell and magic lines only run on Colab (inside the REPO guard); drop them here.
      yield "".join(line for line in cell["source"]
                    if not line.lstrip().startswith(("!", "%")))


def run_tiny(path, tmp_path, monkeypatch) -> dict:
  """Runs a notebook's code cells in order with the tiny setting; returns its namespace."""
  monkeypatch.setenv("LT_JAX_TINY", "1")
  monkeypatch.setenv("LT_JAX_WORKDIR", str(tmp_path))
  namespace = {}
  for source in code_cells(path):
    exec(compile(source, path, "exec"), namespace)
  return namespace


def test_quickstart_trains_digits_and_cifar10_lt(tmp_path, monkeypatch):
  # A CIFAR-10 python archive in the real format: 60 training and 10 test images per class.
  folder = tmp_path / "data" / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  rng = np.random.RandomState(0)
  for i, name in enumerate([f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]):
    labels = [c for c in range(10) for _ in range(12 if i < 5 else 10)]
    _write_cifar_pickle(folder / name, rng.randint(0, 256, (len(labels), 3072)).astype(np.uint8),
                        labels, b"labels")
  monkeypatch.setenv("LT_JAX_CIFAR_DIR", str(tmp_path / "data"))
  ns = run_tiny(QUICKSTART_NOTEBOOK, tmp_path / "runs", monkeypatch)
  assert ns["digits"]["class_counts"][0] == 100 and ns["c10"]["class_counts"][0] == 50
  for run in ("digits_lt_ce", "cifar10lt_ce"):
    assert (tmp_path / "runs" / run / "per_class_accuracy.png").exists()


def test_ssp_notebook_compares_scratch_rotation_and_moco(tmp_path, monkeypatch):
  ns = run_tiny(SSP_NOTEBOOK, tmp_path, monkeypatch)
  assert len(ns["rows"]) == 7
  for method, suffix in (("rotation", ""), ("moco", "_q")):
    out = ns[method]
    assert set(out["stages"]) == {"pretrain", "probe", "final"}
    pre = out["stages"]["pretrain"]
    if method == "rotation":
      assert pre["dataset"]["num_classes"] == 4 and pre["dataset"]["test_size"] == 4 * 539
    else:
      assert np.isfinite(pre["final_loss"])
    saved, _ = Checkpoints(str(tmp_path / method / "pretrain" / "checkpoints" / "last")).restore()
    # The probe froze the backbone: its parameters and statistics are the pre-trained ones.
    probe, _ = Checkpoints(str(tmp_path / method / "probe" / "checkpoints" / "last")).restore()
    assert_same_tree(probe["params"]["backbone"], saved["params" + suffix]["backbone"])
    assert_same_tree(probe["batch_stats"]["backbone"], saved["batch_stats" + suffix]["backbone"])
  assert (tmp_path / "probe_per_class.png").exists() and (tmp_path / "features_pca.png").exists()


def test_notebook_runs_with_the_tiny_setting(tmp_path, monkeypatch):
  namespace = run_tiny(NOTEBOOK, tmp_path, monkeypatch)
  results = namespace["results"]
  assert set(results["stages"]) == {"base", "pseudo_labels", "final"}
  assert (tmp_path / "final" / "per_class_accuracy.png").exists()
  for plot in ("pseudo_label_quality.png", "rho_u_and_threshold.png"):
    assert (tmp_path / plot).exists()
  # Keeping only the more confident pseudo-labels keeps fewer images, and at threshold 0 all.
  kept = [k for _, k in namespace["by_threshold"].values()]
  assert kept[0] == 100.0 and kept == sorted(kept, reverse=True)
  # Threshold 0 keeps the run's own pool as its pseudo-label stage labeled it.
  assert namespace["by_threshold"][0.0][0] == pytest.approx(
      results["stages"]["pseudo_labels"]["accuracy"], abs=1e-9)


def test_benchmark_notebook_runs_a_tiny_grid(tmp_path, monkeypatch):
  namespace = run_tiny(BENCHMARK_NOTEBOOK, tmp_path, monkeypatch)
  members = namespace["results"]["members"]
  assert sorted(members) == sorted(f"scratch/{m}/seed_{s}" for m in ("ce", "ldam_drw")
                                   for s in (0, 1))
  assert all(m["status"] == "ok" for m in members.values())
  assert "| scratch | ldam_drw |" in namespace["report"]
  assert (tmp_path / "error_by_method.png").exists()
