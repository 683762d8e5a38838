"""End-to-end training speed: the same config run by this checkout (and by other commits, or
with other settings) in one invocation, as a table of wall times, images/s and ratios.

  # this tree against an older commit, on digits (no download), 2 repeats interleaved:
  python benchmarks/train_throughput.py --config=configs/digits_lt_ce.py \\
      --set=train.num_epochs=10 --baseline_commit=61978bb --repeats=2
  # settings of this tree against each other (the first variant is the baseline):
  python benchmarks/train_throughput.py --config=configs/cifar10lt_ce.py \\
      --set=dataset.data_dir=/tmp/fmnist_cifar \\
      --variant=spc1:train.steps_per_call=1 --variant=spc32:train.steps_per_call=32 \\
      --variant=bf16:model.dtype=bfloat16

Every run is a fresh `python run.py` process in its own workdir (removed afterwards), so the
wall time includes start-up, data loading and compilation; `train img/s` is the run's own
figure (epochs after the first), `eval ms` its mean evaluation time. A baseline commit runs
from a temporary `git worktree` of this repository with this same Python environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="config file, relative to the repository")
  parser.add_argument("--set", action="append", default=[],
                      help="field=value applied to every run (repeatable)")
  parser.add_argument("--variant", action="append", default=[],
                      help="label:field=value[,field=value] run by this tree (repeatable)")
  parser.add_argument("--baseline_commit", default=None,
                      help="also run this commit (first, as the baseline) from a git worktree")
  parser.add_argument("--repeats", type=int, default=1, help="rounds, runs interleaved")
  parser.add_argument("--timeout", type=int, default=3600, help="seconds per run")
  return parser.parse_args()


def overrides(pairs) -> list[str]:
  return [f"--config.{p}" for p in pairs if p]


@contextlib.contextmanager
def checkout(commit: str | None):
  """A temporary worktree of `commit` (None: this tree)."""
  if commit is None:
    yield ROOT
    return
  path = tempfile.mkdtemp(prefix="lt_jax_baseline_")
  subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, commit], check=True,
                 capture_output=True)
  try:
    yield path
  finally:
    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path],
                   capture_output=True)


def run_env(tree: str) -> dict:
  """The environment of a run from `tree`: its lt_jax first on the path, then whatever the
  caller's path holds (packages installed beside the Python, as on an offline machine)."""
  caller = os.environ.get("PYTHONPATH")
  return dict(os.environ, PYTHONPATH=os.pathsep.join([tree] + ([caller] if caller else [])))


def run_once(tree: str, config: str, flags: list[str], timeout: int) -> dict:
  workdir = tempfile.mkdtemp(prefix="lt_jax_bench_")
  env = run_env(tree)
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "run.py", f"--config={config}",
                         f"--workdir={workdir}/run", *flags], cwd=tree, env=env,
                        capture_output=True, text=True, timeout=timeout)
  wall = time.perf_counter() - start
  try:
    if proc.returncode != 0:
      raise SystemExit(f"run failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    with open(os.path.join(workdir, "run", "results.json")) as f:
      out = json.load(f)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  eval_s = out.get("eval_seconds")
  return {"wall": wall, "images_per_s": out.get("train_images_per_s"),
          "eval_ms": None if eval_s is None else 1000 * eval_s,
          "top1": out["final"]["top1_acc"]}


def fmt(value, spec, suffix: str = "") -> str:
  return "-" if value is None else format(value, spec) + suffix


def main() -> None:
  args = parse_args()
  common = overrides(args.set)
  variants = []
  for v in args.variant or ["this tree:"]:
    label, _, fields = v.partition(":")
    variants.append((label, overrides(fields.split(","))))
  with checkout(args.baseline_commit) as base_tree:
    runs = [(label, ROOT, flags) for label, flags in variants]
    if args.baseline_commit:
      runs.insert(0, (f"baseline {args.baseline_commit}", base_tree, []))
    results = {label: [] for label, _, _ in runs}
    for r in range(args.repeats):
      for label, tree, flags in runs:
        out = run_once(tree, args.config, common + flags, args.timeout)
        results[label].append(out)
        print(f"round {r + 1}, {label}: {out['wall']:.1f} s, "
              f"{fmt(out['images_per_s'], ',.0f')} train img/s", flush=True)
  import jax  # After the runs: the table names the device they used.
  print(f"\n{args.config} {' '.join(common)}; {jax.device_count()} x {jax.devices()[0].device_kind}"
        f" ({jax.default_backend()}); best of {args.repeats}")
  print("| run | wall s | train img/s | eval ms | top-1 | wall vs first | img/s vs first |")
  print("|---|---|---|---|---|---|---|")
  best = {label: (min(o["wall"] for o in outs),
                  max((o["images_per_s"] or 0) for o in outs) or None,
                  min((o["eval_ms"] for o in outs if o["eval_ms"] is not None), default=None),
                  outs[0]["top1"]) for label, outs in results.items()}
  first_wall, first_rate = next(iter(best.values()))[:2]
  for label, (wall, rate, eval_ms, top1) in best.items():
    speed = None if not (rate and first_rate) else rate / first_rate
    print(f"| {label} | {wall:.1f} | {fmt(rate, ',.0f')} | {fmt(eval_ms, '.1f')} | "
          f"{top1:.2f} | {first_wall / wall:.2f}x | {fmt(speed, '.2f', 'x')} |")


if __name__ == "__main__":
  main()
