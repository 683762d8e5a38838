"""Training speed of one run alone against grids of 4, 8, 12 and 24 models, in one process.

  # CPU, digits (no download):
  python benchmarks/grid_throughput.py --config=configs/digits_lt_grid.py --sizes=4,8
  # accelerator, CIFAR-10-LT-shaped data (benchmarks/fmnist_as_cifar.py writes it):
  python benchmarks/grid_throughput.py --config=configs/cifar10lt_grid.py \\
      --set=dataset.data_dir=/tmp/fmnist_cifar --maps=vmap,unroll
  # several accelerators: each model on one device instead of on all of them
  python benchmarks/grid_throughput.py --config=configs/cifar10lt_grid.py \
      --set=dataset.data_dir=/tmp/fmnist_cifar --devices_per_model=1

The first row is the first method's run alone (its plain step, as run.py trains it). A grid of M
models cycles through the config's grid.methods (seeds 0, 1, ...), so it holds
several cohorts, as a real benchmark grid does. Every size trains through the driver's own
multi-step dispatch (train.steps_per_call, auto: 1 on CPU, 32 on accelerators) for
--warmup_steps (compilation included, not timed) and then --steps timed steps. The table gives
images/s per model and in total, the ratio of the total to the run alone, and the time the
config's whole schedule (train.num_epochs) would take at that speed, evaluation excluded.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

from lt_jax import grid, inputs, io_utils, parallel, recipe  # noqa: E402
from lt_jax.config import override  # noqa: E402
from lt_jax.models import create_model  # noqa: E402
from lt_jax.train import driver, optim  # noqa: E402
from lt_jax.train import members as members_lib  # noqa: E402
from lt_jax.train import step as step_lib  # noqa: E402


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="a grid config file (configs/*_grid.py)")
  parser.add_argument("--set", action="append", default=[], help="field=value (repeatable)")
  parser.add_argument("--sizes", default="4,8,12,24", help="models per grid program")
  parser.add_argument("--maps", default="auto", help="member maps to compare: auto,vmap,unroll")
  parser.add_argument("--devices_per_model", type=int, default=0,
                      help="split the grids' models over groups of this many devices "
                           "(grid.devices_per_model; 0: every model on every device)")
  parser.add_argument("--steps", type=int, default=64, help="timed steps per size")
  parser.add_argument("--warmup_steps", type=int, default=0,
                      help="untimed steps first (0: one dispatch)")
  parser.add_argument("--json", default=None, help="also write the rows here")
  parser.add_argument("--deadline_s", type=float, default=0.0,
                      help="measure no further size after this many seconds (0: none)")
  return parser.parse_args()


def load_config(path: str, sets: list[str]):
  """The config file's get_config() with field=value overrides (Python literals, else
  strings)."""
  spec = importlib.util.spec_from_file_location("bench_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  fields = {}
  for pair in sets:
    key, _, value = pair.partition("=")
    try:
      fields[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      fields[key] = value
  return override(module.get_config(), **fields)


def members_for(config, size: int) -> list[grid.Member]:
  methods = list(config.grid.methods) or ["ce"]
  return [grid.Member(f"scratch/{methods[i % len(methods)]}/seed_{i // len(methods)}",
                      grid.member_config(config, methods[i % len(methods)], i // len(methods)),
                      workdir="/nonexistent") for i in range(size)]


def alone(config):
  """The first method's run by itself, as classify.train_and_evaluate builds it."""
  cfg = members_for(config, 1)[0].config
  inp = inputs.DeviceInput(recipe.training_data(cfg))
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)
  plan = recipe.plan(cfg, inp.steps_per_epoch(cfg.train.batch_size))
  model = create_model(cfg.model.name, num_classes=inp.num_classes, head=cfg.model.head,
                       dtype=cfg.model.dtype, conv_impl=cfg.model.conv_impl)
  tx = optim.make_optimizer(cfg.optim, plan.num_epochs, plan.steps_per_epoch)
  step = inp.make_step(cfg, model, tx, parallel.batch_sharded(mesh))
  state = step_lib.create_state(model, tx, inp.image_shape, cfg.seed, replicated)
  return step, state, inp.train_data(cfg, mesh), replicated, plan


def measure(config, size: int, how: str, steps: int, warmup: int, mesh=None) -> dict:
  if size == 1 and how == "alone":
    step, state, data, sharding, plan = alone(config)
    cohorts = [[None]]
  else:
    cohorts = grid.plan_programs(members_for(config, size))
    assert len(cohorts) == 1, "every member of one size must share a program"
    program = grid.build_program(cohorts[0], how, mesh=mesh)
    step, state, data, sharding, plan = (program.step, program.state, program.train_data,
                                         program.sharding, program.plan)
    cohorts = cohorts[0]
  multi = driver.make_multi_step(step, sharding, plan.steps_per_call)
  sums = multi.zeros(state, data)
  k = plan.steps_per_call

  def run(n: int):
    nonlocal state, sums
    done = 0
    while done < n:
      chunk = min(k, n - done)
      state, sums = multi(state, sums, data, chunk)
      done += chunk
    jax.block_until_ready(state)

  start = time.perf_counter()
  run(max(warmup, k))
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  run(steps)
  seconds = time.perf_counter() - start
  per_step = seconds / steps
  total_steps = plan.num_epochs * plan.steps_per_epoch
  return {"models": size, "cohorts": len(cohorts), "map": how,
          "steps_per_call": k, "first_call_s": compile_s,
          "images_per_s": plan.batch_size / per_step,
          "images_per_s_per_model": plan.batch_size / per_step / size,
          "schedule_s": per_step * total_steps}


def main() -> None:
  args = parse_args()
  config = load_config(args.config, args.set)
  sizes = [int(s) for s in args.sizes.split(",")]
  mesh = parallel.model_group_mesh(args.devices_per_model)
  groups = parallel.model_groups(mesh)
  maps = [members_lib.resolve_member_map(m, groups) for m in args.maps.split(",")]
  runs = [(1, "alone")] + [(size, how) for how in dict.fromkeys(maps) for size in sizes]
  rows, skipped, start = [], [], time.monotonic()
  for size, how in runs:
    if rows and args.deadline_s > 0 and time.monotonic() - start >= args.deadline_s:
      skipped.append(f"{size} {how}")
      continue
    row = measure(config, size, how, args.steps, args.warmup_steps, mesh)
    rows.append(row)
    print(json.dumps(row), flush=True)
  device = jax.devices()[0]
  print(f"\n{args.config} {' '.join(args.set)}; {jax.device_count()} x {device.device_kind} "
        f"({jax.default_backend()}); {args.steps} timed steps of batch "
        f"{config.train.batch_size} per model"
        + (f"; grids' models split over {groups} groups of {args.devices_per_model} devices"
           if groups > 1 else ""))
  print("| models | map | img/s total | img/s per model | total vs alone | per model vs "
        f"alone | {config.train.num_epochs} epochs |")
  print("|---|---|---|---|---|---|---|")
  base = rows[0]["images_per_s"]
  for row in rows:
    print(f"| {row['models']} | {row['map']} | {row['images_per_s']:,.0f} | "
          f"{row['images_per_s_per_model']:,.0f} | {row['images_per_s'] / base:.2f}x | "
          f"{row['images_per_s_per_model'] / base:.2f}x | {row['schedule_s'] / 60:.1f} min |")
  if skipped:
    print(f"not measured, past the {args.deadline_s:.0f} s deadline: {', '.join(skipped)}")
  if args.json:
    io_utils.atomic_write_json(args.json, {"device": str(device), "config": args.config,
                                           "set": args.set, "rows": rows, "skipped": skipped})


if __name__ == "__main__":
  main()
