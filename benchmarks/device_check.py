"""The accelerator check: one command, one table (run by benchmarks/device_check.sh).

  python benchmarks/device_check.py              # full size: a 200-epoch CIFAR-10-LT run
  python benchmarks/device_check.py --size=cpu   # the same steps, CPU-sized
  python benchmarks/device_check.py --stages=grid,torch   # only these stages
  python benchmarks/device_check.py --deadline_s=420      # start no stage after 7 minutes

1. Fashion-MNIST written as a CIFAR-10 archive (benchmarks/fmnist_as_cifar.py), so the run has
   CIFAR-10-LT's shape (rho 100, 12,406 training images, 10,000 test images, 32x32x3).
2. `configs/cifar10lt_ce.py` on it, end to end in a fresh process (ResNet-32, batch 128, 200
   epochs, evaluation every epoch), in float32 and with `model.dtype=bfloat16`.
3. Pseudo-labeling of 500,000 images (benchmarks/pseudo_label_throughput.py).
4. Where PyTorch is installed: the reference-style PyTorch ResNet-32 epoch (DataLoader with
   per-image crop/flip/normalise in worker processes, evaluation every epoch) on the same
   files (benchmarks/torch_reference.py), projected to 200 epochs.
5. The grid (benchmarks/grid_throughput.py): images/s of one run alone and of grids of 4, 8,
   12 and 24 models of `configs/cifar10lt_grid.py` (8 methods cycled, vmap), per model and in
   total, with each grid's 200-epoch training time at that speed (target: 12 models under 5
   minutes end to end).
6. Steps per call (benchmarks/steps_per_call.py): the float32 run's step dispatched 1, 4, 16,
   32, 64 and 128 steps per call, images/s against one step per call, the measurement behind
   the accelerator default of `train.steps_per_call`.

Stages run in the order of --stages (by default the accelerator targets first: float32,
pseudo_label, grid, steps_per_call, bfloat16, torch). A stage that fails is reported and the
others go on; once --deadline_s has passed, the stages left are skipped and named, with the
command that runs them (and the grid stage measures no further size). The JSON (--json) is
rewritten after every stage, so a run cut short still returns what it measured.

Ratios are against the PyTorch row where it exists. Targets (one H100/H200): the float32 run
under 60 s, an evaluation of the 10,000 test images under 50 ms, pseudo-labeling above
300,000 images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import fmnist_as_cifar  # noqa: E402
import pseudo_label_throughput as plt_bench  # noqa: E402
import train_throughput  # noqa: E402

from lt_jax import io_utils  # noqa: E402

SIZES = {
    # epochs, overrides of the lt_jax runs, pseudo-label images, PyTorch epochs and img_max.
    "full": (200, [], 500_000, (3, None)),
    # A smoke test of every step, not a measurement: the tiny ResNet, a largest class of 200.
    "cpu": (1, ["dataset.img_max=200", "model.name=resnet_tiny"], 2_000, (2, 200)),
}
# Grid benchmark: models per program and timed steps.
GRID_SIZES = {"full": ("4,8,12,24", 128), "cpu": ("2,4", 4)}
# Steps-per-call benchmark: sizes and timed steps per size.
STEPS_PER_CALL_SIZES = {"full": ("1,4,16,32,64,128", 512), "cpu": ("1,2,8", 16)}
# Every stage, the accelerator targets first.
STAGES = ("float32", "pseudo_label", "grid", "steps_per_call", "bfloat16", "torch")
TABLES = ("grid", "steps_per_call")  # Stages that print their own table.


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="full")
  parser.add_argument("--fmnist_dir", default=None, help="Fashion-MNIST IDX folder")
  parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                      help="DataLoader workers of the PyTorch reference")
  parser.add_argument("--json", default=None, help="also write the rows here")
  parser.add_argument("--stages", default=",".join(STAGES),
                      help=f"comma-separated, run in this order; of {','.join(STAGES)}")
  parser.add_argument("--deadline_s", type=float, default=0.0,
                      help="start no stage after this many seconds (0: no deadline)")
  args = parser.parse_args()
  args.stages = [s for s in args.stages.split(",") if s]
  unknown = [s for s in args.stages if s not in STAGES]
  if unknown or len(set(args.stages)) != len(args.stages) or not args.stages:
    parser.error(f"--stages={','.join(args.stages)}: name each of {','.join(STAGES)} at most "
                 "once")
  return args


def run_stages(stages: dict[str, Callable[[], object]], deadline_s: float,
               report: Callable[[dict], None], clock: Callable[[], float] = time.monotonic
               ) -> dict:
  """Runs `stages` (name -> function) in order and returns {"done": {name: result},
  "failed": {name: error}, "skipped": [names], "seconds": {name: wall time}}; a stage that
  raises is recorded and the next one starts; none starts once `deadline_s` (> 0) has passed.
  `report` gets the record after every stage, and once more when stages were skipped."""
  start = clock()
  record = {"done": {}, "failed": {}, "skipped": [], "seconds": {}}
  for name, stage in stages.items():
    began = clock()
    if deadline_s > 0 and began - start >= deadline_s:
      record["skipped"].append(name)
      continue
    print(f"== {name} (at {began - start:.0f} s)", flush=True)
    try:
      record["done"][name] = stage()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - one broken stage must not lose
      traceback.print_exc()                # the others (a benchmark may exit with a message).
      record["failed"][name] = f"{type(e).__name__}: {e}"
    record["seconds"][name] = clock() - began
    report(record)
  if record["skipped"]:
    report(record)
  return record


def lt_jax_row(name: str, data_dir: str, epochs: int, extra: list[str]) -> dict:
  fields = [f"dataset.data_dir={data_dir}", f"train.num_epochs={epochs}",
            "train.checkpoint_every_epochs=50", *extra]
  out = train_throughput.run_once(train_throughput.ROOT, "configs/cifar10lt_ce.py",
                                  train_throughput.overrides(fields), timeout=1800)
  print(f"{name}: {json.dumps(out)}", flush=True)
  return {"name": name, "wall_s": out["wall"], "images_per_s": out["images_per_s"],
          "eval_ms": out["eval_ms"], "top1": out["top1"]}


def pseudo_label_row(num: int) -> dict:
  import numpy as np

  from lt_jax import parallel
  mesh = parallel.make_mesh()
  images = np.random.default_rng(0).integers(0, 256, (num, 32, 32, 3), np.uint8)
  frozen = plt_bench.frozen_resnet32(0)
  seconds = plt_bench.time_predict(frozen, images, 1024, mesh)
  print(f"pseudo-labels: {num} images in {seconds:.2f} s", flush=True)
  return {"name": f"pseudo-label {num:,} images", "wall_s": seconds,
          "images_per_s": num / seconds, "eval_ms": None, "top1": None}


def torch_row(data_dir: str, epochs: int, total_epochs: int, workers: int,
              img_max: int | None) -> dict | None:
  try:
    import torch  # noqa: F401
  except ImportError:
    print("PyTorch is not installed: no reference row", flush=True)
    return None
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
  proc = subprocess.run([sys.executable, script, f"--data_dir={data_dir}",
                         f"--epochs={epochs}", f"--workers={workers}"]
                        + ([f"--img_max={img_max}"] if img_max else []),
                        capture_output=True, text=True, timeout=1800)
  if proc.returncode != 0:
    print(f"PyTorch reference failed:\n{proc.stderr[-3000:]}", flush=True)
    return None
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  print(f"torch reference: {json.dumps(out)}", flush=True)
  return {"name": f"PyTorch reference ({workers} workers), {total_epochs} epochs projected",
          "wall_s": out["epoch_s"] * total_epochs, "images_per_s": out["train_images_per_s"],
          "eval_ms": 1000 * out["eval_s"], "top1": None}


def benchmark_rows(script: str, config: str, data_dir: str, extra: list[str],
                   sizes_and_steps: tuple[str, int], *flags: str) -> dict:
  """benchmarks/<script>.py on `config` over the check's data, in a fresh process: it prints
  its own table; its JSON comes back."""
  sizes, steps = sizes_and_steps
  out = os.path.join(data_dir, f"{script}.json")
  sets = [f"--set={f}" for f in [f"dataset.data_dir={data_dir}", *extra]]
  subprocess.run([sys.executable, os.path.join(HERE, f"{script}.py"), f"--config={config}",
                  *sets, f"--sizes={sizes}", f"--steps={steps}", f"--json={out}", *flags],
                 check=True, cwd=os.path.dirname(HERE), timeout=1800)
  with open(out) as f:
    return json.load(f)


def grid_rows(data_dir: str, size: str, extra: list[str], deadline_s: float = 0.0) -> dict:
  """The grid benchmark; `deadline_s` > 0: it measures no further grid size after that many
  seconds."""
  return benchmark_rows("grid_throughput", "configs/cifar10lt_grid.py", data_dir, extra,
                        GRID_SIZES[size], f"--deadline_s={deadline_s}")


def steps_per_call_rows(data_dir: str, size: str, extra: list[str]) -> dict:
  return benchmark_rows("steps_per_call", "configs/cifar10lt_ce.py", data_dir, extra,
                        STEPS_PER_CALL_SIZES[size])


def print_table(rows: list[dict], reference: dict | None) -> None:
  import jax
  print(f"\n{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})")
  print("| what | wall s | images/s | eval ms | top-1 | wall vs PyTorch | img/s vs PyTorch |")
  print("|---|---|---|---|---|---|---|")
  fmt = train_throughput.fmt
  for row in rows:
    wall_ratio = rate_ratio = None
    if reference is not None and row is not reference and row["top1"] is not None:
      wall_ratio = reference["wall_s"] / row["wall_s"]
      rate_ratio = row["images_per_s"] / reference["images_per_s"]
    print(f"| {row['name']} | {row['wall_s']:.1f} | {fmt(row['images_per_s'], ',.0f')} | "
          f"{fmt(row['eval_ms'], '.1f')} | {fmt(row['top1'], '.2f')} | "
          f"{fmt(wall_ratio, '.2f', 'x')} | {fmt(rate_ratio, '.2f', 'x')} |")


def main() -> None:
  args = parse_args()
  epochs, extra, num_pseudo, (torch_epochs, img_max) = SIZES[args.size]
  data_dir = tempfile.mkdtemp(prefix="lt_jax_fmnist_cifar_")
  sys.argv = ["fmnist_as_cifar", f"--out={data_dir}"] + (
      [f"--fmnist_dir={args.fmnist_dir}"] if args.fmnist_dir else [])
  fmnist_as_cifar.main()
  start = time.monotonic()

  def time_left() -> float:
    """Seconds to the deadline (at least 1), 0 without one."""
    return max(args.deadline_s - (time.monotonic() - start), 1.0) if args.deadline_s else 0.0

  every = {
      "float32": lambda: lt_jax_row(f"lt_jax float32, {epochs} epochs", data_dir, epochs,
                                    extra),
      "pseudo_label": lambda: pseudo_label_row(num_pseudo),
      "grid": lambda: grid_rows(data_dir, args.size, extra, time_left()),
      "steps_per_call": lambda: steps_per_call_rows(data_dir, args.size, extra),
      "bfloat16": lambda: lt_jax_row(f"lt_jax bfloat16, {epochs} epochs", data_dir, epochs,
                                     extra + ["model.dtype=bfloat16"]),
      "torch": lambda: torch_row(data_dir, torch_epochs, epochs, args.workers, img_max),
  }

  def write(record: dict) -> None:
    if args.json:
      runs = [record["done"][n] for n in STAGES if n not in TABLES and record["done"].get(n)]
      io_utils.atomic_write_json(args.json, {
          "size": args.size, "runs": runs, **{n: record["done"].get(n) for n in TABLES},
          "failed": record["failed"], "skipped": record["skipped"],
          "stage_seconds": record["seconds"]})

  record = run_stages({name: every[name] for name in args.stages}, args.deadline_s, write)
  done = record["done"]
  reference = done.get("torch")
  rows = [done[n] for n in STAGES if n not in TABLES + ("torch",) and n in done]
  if rows or reference:
    print_table(rows + ([reference] if reference else []), reference)
  print("stage wall times: " + ", ".join(f"{n} {t:.0f} s" for n, t in record["seconds"].items()))
  for name, error in record["failed"].items():
    print(f"stage {name} failed: {error}")
  if record["skipped"]:
    print(f"skipped at the {args.deadline_s:.0f} s deadline: {', '.join(record['skipped'])}; "
          f"run them with: benchmarks/device_check.sh {args.size} "
          f"--stages={','.join(record['skipped'])}")
  if record["failed"]:
    sys.exit(1)


if __name__ == "__main__":
  main()
