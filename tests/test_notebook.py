"""The Colab notebooks run, as written, on this CPU with their tiny settings."""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "colab", "lt_jax_semi.ipynb")
BENCHMARK_NOTEBOOK = os.path.join(ROOT, "colab", "benchmark_losses.ipynb")


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


def test_notebook_runs_with_the_tiny_setting(tmp_path, monkeypatch):
  monkeypatch.setenv("LT_JAX_TINY", "1")
  monkeypatch.setenv("LT_JAX_WORKDIR", str(tmp_path))
  namespace = {}
  for source in code_cells():
    exec(compile(source, NOTEBOOK, "exec"), namespace)
  results = namespace["results"]
  assert set(results["stages"]) == {"base", "pseudo_labels", "final"}
  assert (tmp_path / "final" / "per_class_accuracy.png").exists()


def test_benchmark_notebook_runs_a_tiny_grid(tmp_path, monkeypatch):
  monkeypatch.setenv("LT_JAX_TINY", "1")
  monkeypatch.setenv("LT_JAX_WORKDIR", str(tmp_path))
  namespace = {}
  for source in code_cells(BENCHMARK_NOTEBOOK):
    exec(compile(source, BENCHMARK_NOTEBOOK, "exec"), namespace)
  members = namespace["results"]["members"]
  assert sorted(members) == sorted(f"scratch/{m}/seed_{s}" for m in ("ce", "drw", "ldam_drw")
                                   for s in (0, 1))
  assert all(m["status"] == "ok" for m in members.values())
  assert "| scratch | ldam_drw |" in namespace["report"]
  assert (tmp_path / "error_by_method.png").exists()
