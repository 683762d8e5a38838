"""The accelerator check's stage runner: its order, a failing stage, the deadline, and a record
written after every stage (the check itself needs an accelerator; its CPU size takes minutes)."""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import device_check  # noqa: E402

from lt_jax import io_utils  # noqa: E402


@pytest.mark.parametrize("error", [RuntimeError, SystemExit])  # A benchmark may exit.
def test_stages_run_in_order_a_failure_is_kept_and_the_deadline_skips_the_rest(tmp_path, error):
  now, ran = [0.0], []

  def stage(name, seconds, fail=False):
    def run():
      ran.append(name)
      now[0] += seconds
      if fail:
        raise error(f"{name} broke")
      return {"name": name}
    return run

  path = str(tmp_path / "check.json")
  written = []

  def report(record):
    io_utils.atomic_write_json(path, record)
    with open(path) as f:
      written.append(json.load(f))

  record = device_check.run_stages(
      {"a": stage("a", 100), "b": stage("b", 50, fail=True), "c": stage("c", 10),
       "d": stage("d", 1), "e": stage("e", 1)},
      deadline_s=160, report=report, clock=lambda: now[0])
  # a ends at 100 s, b fails at 150 s, c starts before the deadline and ends at 160 s.
  assert ran == ["a", "b", "c"]
  assert record["done"] == {"a": {"name": "a"}, "c": {"name": "c"}}
  assert record["failed"] == {"b": f"{error.__name__}: b broke"}
  assert record["skipped"] == ["d", "e"]
  assert record["seconds"] == {"a": 100, "b": 50, "c": 10}
  # The file held every finished stage as soon as it finished, and in the end the skipped.
  assert [sorted(w["done"]) + sorted(w["failed"]) for w in written] == [
      ["a"], ["a", "b"], ["a", "c", "b"], ["a", "c", "b"]]
  assert [w["skipped"] for w in written] == [[], [], [], ["d", "e"]]


def test_no_deadline_runs_every_stage():
  record = device_check.run_stages({n: (lambda n=n: n) for n in device_check.STAGES}, 0.0,
                                   report=lambda r: None, clock=lambda: 1e9)
  assert list(record["done"]) == list(device_check.STAGES) and not record["skipped"]


@pytest.mark.parametrize("stages", ["grid,nope", "grid,grid", ""])
def test_bad_stage_lists_are_refused_naming_the_choices(stages, monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", ["device_check.py", f"--stages={stages}"])
  with pytest.raises(SystemExit):
    device_check.parse_args()
  assert ",".join(device_check.STAGES) in capsys.readouterr().err


def test_runs_on_in_memory_arrays_import_no_grain():
  """grain (with array_record and portpicker) serves image lists only: a CIFAR, digits or grid
  run, and the check's benchmarks, start without it (an offline accelerator lacks it)."""
  code = ("import sys; sys.argv = ['run.py']; sys.path[:0] = ['benchmarks', '.']\n"
          "import run, device_check, grid_throughput\n"
          "from lt_jax import decouple, grid, pipeline, pseudo_label\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('grain', 'array_record', 'portpicker')))")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "[]"


def test_a_benchmark_run_keeps_the_callers_path_after_its_tree(monkeypatch):
  import train_throughput
  monkeypatch.setenv("PYTHONPATH", "/site/wheels")
  assert train_throughput.run_env("/tree")["PYTHONPATH"] == os.pathsep.join(
      ["/tree", "/site/wheels"])
  monkeypatch.delenv("PYTHONPATH")
  assert train_throughput.run_env("/tree")["PYTHONPATH"] == "/tree"
