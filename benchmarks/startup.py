"""Start-up time: how long a run takes to its first training step, and how much a second run
of the same config saves through the persistent compilation cache.

  python benchmarks/startup.py                     # digits_lt_ce (60 epochs) and make demo
  python benchmarks/startup.py --config=configs/digits_lt_ce.py --set=train.num_epochs=5

Each config runs as a fresh `python run.py` process twice: cold (an empty compilation cache)
and warm (the cache the cold run filled), in new workdirs each time, so the warm run trains
again from scratch and only compilation can be saved. Reported per run: seconds from the
process start to the end of its first training step (the driver's "first ... step done" line)
and the whole wall time, with warm / cold ratios. The targets this measures on a 2-core CPU:
the first step of configs/digits_lt_ce.py within 15 s, and a second `make demo`
(configs/digits_lt_semi.py) in at most half the first one's time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_STEP = re.compile(r"first \w+ step done in")


def timed_run(config: str, settings: list[str], cache: str, workdir: str) -> tuple[float, float]:
  """(seconds to the first training step, wall seconds) of one `run.py` process."""
  env = {**os.environ, "LT_JAX_COMPILATION_CACHE": cache}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  args = [sys.executable, "-u", "run.py", f"--config={config}", f"--workdir={workdir}",
          *(f"--config.{s}" for s in settings)]
  start = time.perf_counter()
  first = None
  with subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True) as proc:
    for line in proc.stdout:
      if first is None and FIRST_STEP.search(line):
        first = time.perf_counter() - start
    if proc.wait():
      raise SystemExit(f"{' '.join(args)} failed with exit status {proc.returncode}")
  return (first if first is not None else float("nan")), time.perf_counter() - start


def measure(config: str, settings: list[str]) -> list[tuple[str, float, float]]:
  with tempfile.TemporaryDirectory(prefix="lt_jax_startup_") as tmp:
    cache = os.path.join(tmp, "cache")
    rows = []
    for name in ("cold", "warm"):
      workdir = os.path.join(tmp, name)
      rows.append((name, *timed_run(config, settings, cache, workdir)))
      shutil.rmtree(workdir)
    return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", action="append", help="config file(s); default: "
                      "configs/digits_lt_ce.py and configs/digits_lt_semi.py (make demo)")
  parser.add_argument("--set", action="append", default=[],
                      help="a config override for every run, e.g. train.num_epochs=5")
  args = parser.parse_args()
  configs = args.config or ["configs/digits_lt_ce.py", "configs/digits_lt_semi.py"]
  print(f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
  print("| config | run | first step s | wall s | warm / cold wall |")
  print("|---|---|---|---|---|")
  for config in configs:
    (_, cold_first, cold_wall), (_, warm_first, warm_wall) = measure(config, args.set)
    name = os.path.basename(config)
    print(f"| {name} | cold | {cold_first:.1f} | {cold_wall:.1f} | |", flush=True)
    print(f"| {name} | warm | {warm_first:.1f} | {warm_wall:.1f} | {warm_wall / cold_wall:.2f} |",
          flush=True)


if __name__ == "__main__":
  main()
