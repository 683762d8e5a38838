"""Train images/s of one run at several `train.steps_per_call`, in one process: the numbers
that pick the accelerator default (driver.AUTO_STEPS_PER_CALL).

  # CPU, digits (no download):
  python benchmarks/steps_per_call.py --config=configs/digits_lt_ce.py --sizes=1,2,8 --steps=32
  # accelerator, CIFAR-10-LT-shaped data (benchmarks/fmnist_as_cifar.py writes it):
  python benchmarks/steps_per_call.py --set=dataset.data_dir=/tmp/fmnist_cifar

The step is the run's own (as classify.train_and_evaluate builds it), dispatched by the
driver's MultiStep: k = 1 is one plain step per call, every k >= 2 shares one compiled
`fori_loop` whose trip count is traced, so the sizes after the first cost no compilation.
Each size runs one untimed call first, then its timed steps (rounded up to whole calls),
waiting on the device only at the end, as the driver does within a log window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import jax  # noqa: E402
from grid_throughput import alone, load_config  # noqa: E402

from lt_jax import io_utils  # noqa: E402
from lt_jax.train import driver  # noqa: E402


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/cifar10lt_ce.py")
  parser.add_argument("--set", action="append", default=[], help="field=value (repeatable)")
  parser.add_argument("--sizes", default="1,4,16,32,64,128", help="steps per call to time")
  parser.add_argument("--steps", type=int, default=512, help="timed steps per size")
  parser.add_argument("--json", default=None, help="also write the rows here")
  args = parser.parse_args()
  args.sizes = [int(k) for k in args.sizes.split(",")]
  if not args.sizes or min(args.sizes) < 1 or args.steps < 1:
    parser.error("--sizes takes integers >= 1 and --steps a positive count")
  return args


def measure(sizes: list[int], steps: int, config) -> list[dict]:
  step, state, data, sharding, plan = alone(config)
  plain = driver.make_multi_step(step, sharding, 1)
  looped = driver.make_multi_step(step, sharding, 2)  # Any k >= 2: one loop program.
  rows = []
  for k in sizes:
    multi = plain if k == 1 else looped
    sums = multi.zeros(state, data)
    start = time.perf_counter()
    state, sums = multi(state, sums, data, k)
    jax.block_until_ready(state)
    first_s = time.perf_counter() - start
    calls = math.ceil(steps / k)
    start = time.perf_counter()
    for _ in range(calls):
      state, sums = multi(state, sums, data, k)
    jax.block_until_ready((state, sums))
    per_step = (time.perf_counter() - start) / (calls * k)
    row = {"steps_per_call": k, "first_call_s": first_s, "timed_steps": calls * k,
           "ms_per_step": 1000 * per_step, "images_per_s": plan.batch_size / per_step}
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def main() -> None:
  args = parse_args()
  config = load_config(args.config, args.set)
  rows = measure(args.sizes, args.steps, config)
  base = rows[0]["images_per_s"]
  device = jax.devices()[0]
  print(f"\n{args.config} {' '.join(args.set)}; {jax.device_count()} x {device.device_kind} "
        f"({jax.default_backend()}); batch {config.train.batch_size}; the default (0, auto) "
        f"is {driver.steps_per_call(0)} here")
  print(f"| steps per call | ms per step | img/s | vs {rows[0]['steps_per_call']} | "
        "first call s |")
  print("|---|---|---|---|---|")
  for row in rows:
    print(f"| {row['steps_per_call']} | {row['ms_per_step']:.2f} | {row['images_per_s']:,.0f} | "
          f"{row['images_per_s'] / base:.2f}x | {row['first_call_s']:.1f} |")
  if args.json:
    io_utils.atomic_write_json(args.json, {"device": str(device), "config": args.config,
                                           "set": args.set, "rows": rows})


if __name__ == "__main__":
  main()
