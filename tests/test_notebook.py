"""The Colab notebooks run, as written, on this CPU with their tiny settings."""

import json
import os
import subprocess
import sys

import notebook_runner
import numpy as np
import pytest
from conftest import fake_devices_env
from test_pipeline import assert_same_tree
from test_sources import _write_cifar_pickle

from lt_jax.checkpoint import restore_saved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
NOTEBOOK = os.path.join(ROOT, "colab", "lt_jax_semi.ipynb")
BENCHMARK_NOTEBOOK = os.path.join(ROOT, "colab", "benchmark_losses.ipynb")
QUICKSTART_NOTEBOOK = os.path.join(ROOT, "colab", "quickstart.ipynb")
SSP_NOTEBOOK = os.path.join(ROOT, "colab", "ssp.ipynb")


def run_tiny(path, tmp_path, monkeypatch, names=(), devices=None) -> dict:
  """Runs a notebook's code cells in order with the tiny setting; returns its namespace. With
  `devices`, in a process with that many fake CPU devices (a Colab TPU has 8), returning the
  variables `names` as JSON gives them (dict keys as strings, tuples as lists)."""
  monkeypatch.setenv("LT_JAX_TINY", "1")
  monkeypatch.setenv("LT_JAX_WORKDIR", str(tmp_path))
  if devices is None:
    return notebook_runner.run(path)
  proc = subprocess.run([sys.executable, os.path.join(TESTS, "notebook_runner.py"), path,
                         *names], cwd=ROOT, env=fake_devices_env(devices) | {
                             "PYTHONPATH": os.pathsep.join([ROOT, TESTS])},
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out.pop("__devices__") in (devices, None)  # None: the notebook never loaded JAX.
  return out


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
  ns = run_tiny(QUICKSTART_NOTEBOOK, tmp_path / "runs", monkeypatch, ("digits", "c10"), 8)
  assert ns["digits"]["class_counts"][0] == 100 and ns["c10"]["class_counts"][0] == 50
  for run in ("digits_lt_ce", "cifar10lt_ce"):
    assert (tmp_path / "runs" / run / "per_class_accuracy.png").exists()


def test_ssp_notebook_compares_scratch_rotation_and_moco(tmp_path, monkeypatch):
  # In this process, on one device: its pipelines on eight are test_device_count.py's.
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
    saved, _ = restore_saved(str(tmp_path / method / "pretrain" / "checkpoints" / "last"))
    # The probe froze the backbone: its parameters and statistics are the pre-trained ones.
    probe, _ = restore_saved(str(tmp_path / method / "probe" / "checkpoints" / "last"))
    assert_same_tree(probe["params"]["backbone"], saved["params" + suffix]["backbone"])
    assert_same_tree(probe["batch_stats"]["backbone"], saved["batch_stats" + suffix]["backbone"])
  assert (tmp_path / "probe_per_class.png").exists() and (tmp_path / "features_pca.png").exists()


def test_notebook_runs_with_the_tiny_setting(tmp_path, monkeypatch):
  namespace = run_tiny(NOTEBOOK, tmp_path, monkeypatch, ("results", "by_threshold"), 8)
  results = namespace["results"]
  assert set(results["stages"]) == {"base", "pseudo_labels", "final"}
  assert (tmp_path / "final" / "per_class_accuracy.png").exists()
  for plot in ("pseudo_label_quality.png", "rho_u_and_threshold.png"):
    assert (tmp_path / plot).exists()
  # Keeping only the more confident pseudo-labels keeps fewer images, and at threshold 0 all.
  kept = [k for _, k in namespace["by_threshold"].values()]  # In threshold order.
  assert kept[0] == 100.0 and kept == sorted(kept, reverse=True)
  # Threshold 0 keeps the run's own pool as its pseudo-label stage labeled it.
  assert namespace["by_threshold"]["0.0"][0] == pytest.approx(
      results["stages"]["pseudo_labels"]["accuracy"], abs=1e-9)


def test_benchmark_notebook_runs_a_tiny_grid(tmp_path, monkeypatch):
  namespace = run_tiny(BENCHMARK_NOTEBOOK, tmp_path, monkeypatch, ("results", "report"), 8)
  members = namespace["results"]["members"]
  assert sorted(members) == sorted(f"scratch/{m}/seed_{s}" for m in ("ce", "ldam_drw")
                                   for s in (0, 1))
  assert all(m["status"] == "ok" for m in members.values())
  assert "| scratch | ldam_drw |" in namespace["report"]
  assert (tmp_path / "error_by_method.png").exists()


NOTEBOOKS = sorted(os.path.join(ROOT, "colab", f) for f in os.listdir(os.path.join(ROOT, "colab"))
                   if f.endswith(".ipynb"))

SETUP_TWICE = """
import json, os, sys
import notebook_runner
setup = next(c for c in notebook_runner.code_cells(sys.argv[1]) if "IN_COLAB =" in c)
namespace = {"__name__": "__main__"}
exec(compile(setup, "setup", "exec"), namespace)
first = os.getcwd()
exec(compile(setup, "setup", "exec"), namespace)  # Run again: no second clone, same folder.
from configs import digits_lt_ce
import jax, lt_jax
print(json.dumps({"first": first, "cwd": os.getcwd(), "lt_jax": lt_jax.__file__,
                  "configs": digits_lt_ce.__file__, "jax": jax.__version__}))
"""


def test_every_notebook_sets_up_with_one_identical_cell():
  setups = []
  for path in NOTEBOOKS:
    cells = list(notebook_runner.code_cells(path))
    setups.append([c for c in cells if "IN_COLAB =" in c])
    assert len(setups[-1]) == 1 and cells[0] == setups[-1][0], path  # The first code cell.
    assert not any(line.lstrip().startswith(("!", "%")) for cell in cells[:2]
                   for line in cell.splitlines()), path
  assert all(s == setups[0] for s in setups)  # One cell to fix, not five.


def colab_environment(tmp_path):
  """A git repository of this working tree, and a fresh virtual environment that sees this
  one's packages but installs into its own: the set-up cell's `pip install -e` must not
  replace the lt_jax under test. Returns (repo, python)."""
  repo = tmp_path / "repo"
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
  for name in files:
    if os.path.isfile(os.path.join(ROOT, name)):
      (repo / name).parent.mkdir(parents=True, exist_ok=True)
      (repo / name).write_bytes(open(os.path.join(ROOT, name), "rb").read())
  for args in (["init", "-q"], ["add", "-A"],
               ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot"]):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  import site as this_site
  with open(os.path.join(site, "lt_jax_test_packages.pth"), "w") as f:
    f.write(this_site.getsitepackages()[0] + "\n")
  return repo, python


def test_colab_setup_cell_clones_installs_keeps_jax_and_enters_the_repository(tmp_path):
  """The set-up cell itself, as Colab runs it (IN_COLAB forced on), from an empty folder with
  REPO a local repository, installing without network: a bad clone, install or `cd` fails
  here. Run twice, it reuses its clone; with REPO empty it stops, saying what to set."""
  import jax
  repo, python = colab_environment(tmp_path)
  work = tmp_path / "content"
  work.mkdir()
  env = {**os.environ, "LT_JAX_COLAB": "1", "LT_JAX_REPO": str(repo), "PIP_NO_INDEX": "1",
         "PIP_NO_BUILD_ISOLATION": "0", "PYTHONPATH": TESTS}
  proc = subprocess.run([python, "-c", SETUP_TWICE, NOTEBOOKS[0]], cwd=work, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  clone = str(work / "lt_jax")
  assert out["first"] == out["cwd"] == clone
  assert out["lt_jax"].startswith(clone) and out["configs"].startswith(clone)
  assert out["jax"] == jax.__version__  # The runtime's JAX was kept.
  assert "JAX kept: jax==" in proc.stdout
  installed = subprocess.run([python, "-m", "pip", "show", "-f", "lt_jax"], env=env,
                             capture_output=True, text=True).stdout
  assert "Editable project location: " + clone in installed
  empty = subprocess.run([python, "-c", SETUP_TWICE, NOTEBOOKS[0]], cwd=tmp_path / "repo" / "colab",
                         env=env | {"LT_JAX_REPO": ""}, capture_output=True, text=True)
  assert empty.returncode == 0  # Inside a checkout (its colab/ folder): no REPO needed.
  again = tmp_path / "fresh"
  again.mkdir()
  stopped = subprocess.run([python, "-c", SETUP_TWICE, NOTEBOOKS[0]], cwd=again,
                           env=env | {"LT_JAX_REPO": ""}, capture_output=True, text=True)
  assert stopped.returncode == 1
  assert "REPO is empty: set it at the top of this cell" in stopped.stderr
