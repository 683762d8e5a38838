"""Measured evidence on real data: Fashion-MNIST-LT (rho 100), several seeds, one table.

  python benchmarks/evidence.py --study=semi --seeds 0 1 2 --workdir=workdirs/evidence_semi
  python benchmarks/evidence.py --study=ssp --seeds 0 1 2 --workdir=workdirs/evidence_ssp

semi: configs/fmnistlt_semi.py (base model on D_L, pseudo-labels for a 5x balanced pool drawn
      from the training images D_L left, final model on both); the base stage is the "D_L
      alone" baseline: same model, same epochs and schedule.
ssp:  CE and LDAM-DRW from scratch against the same methods initialised from a rotation-
      pre-trained backbone (configs/fmnistlt_ssp_ce.py), same model and budget.

Both run a shortened CPU budget (BUDGET below: a smaller labeled set, ResNet-20, 20 epochs with
the reference schedule scaled to them) and report the final epoch's test metrics (no selection
on the test set) as mean and standard deviation over seeds. Every run keeps its own workdir,
so an interrupted study resumes and finished runs are read back, not retrained.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import fmnistlt_semi, fmnistlt_ssp_ce  # noqa: E402
from lt_jax import io_utils, pipeline  # noqa: E402
from lt_jax.config import override  # noqa: E402
from lt_jax.methods import apply_method  # noqa: E402

BUDGET = {
    "dataset.img_max": 600,  # 600, 359, ..., 6: 1,485 labeled images.
    "model.name": "resnet20",
    "train.num_epochs": 20,
    "train.batch_size": 128,
    "train.drw_epoch": 16,
    "train.eval_every_epochs": 5,
    "train.checkpoint_every_epochs": 5,
    "train.log_every_steps": 100,
    "optim.warmup_epochs": 1,
    "optim.decay_epochs": (16, 18),
}


def semi_runs(seed: int) -> dict:
  config = override(fmnistlt_semi.get_config(), **BUDGET, seed=seed,
                    **{"semi.base_batch_size": 128})
  return {"semi": config}


def ssp_runs(seed: int) -> dict:
  scratch = override(fmnistlt_ssp_ce.get_config(), **BUDGET, seed=seed,
                     **{"pretrain.method": "none"})
  ssp = override(fmnistlt_ssp_ce.get_config(), **BUDGET, seed=seed,
                 **{"pretrain.probe_epochs": 0})
  return {"CE": scratch, "LDAM-DRW": apply_method(scratch, "ldam_drw"),
          "SSP + CE": ssp, "SSP + LDAM-DRW": apply_method(ssp, "ldam_drw")}


def rows_for(study: str, name: str, out: dict) -> dict[str, dict]:
  """Table rows (name -> final test block, plus extras) from one run's results."""
  if study == "semi":
    labels = out["stages"]["pseudo_labels"]
    return {"CE on D_L": out["stages"]["base"]["final"],
            "CE + pseudo-labels": dict(out["stages"]["final"]["final"],
                                       pseudo_label_acc=labels.get("accuracy"))}
  return {name: out["final"]}


def summarize(per_seed: dict[str, list[dict]]) -> str:
  lines = ["| method | seeds | top-1 err (mean ± std) | many | medium | few | pseudo-label acc |",
           "|---|---|---|---|---|---|---|"]
  for name, blocks in per_seed.items():
    cells = [_mean_std(blocks, key) for key in
             ("top1_err", "many_acc", "medium_acc", "few_acc", "pseudo_label_acc")]
    lines.append(f"| {name} | {len(blocks)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _mean_std(blocks: list[dict], key: str) -> str:
  values = [b[key] for b in blocks if b.get(key) is not None]
  if not values:
    return "-"
  std = np.std(values, ddof=1) if len(values) > 1 else 0.0
  return f"{np.mean(values):.2f} ± {std:.2f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", choices=("semi", "ssp"), required=True)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  per_seed: dict[str, list[dict]] = {}
  for seed in args.seeds:
    runs = semi_runs(seed) if args.study == "semi" else ssp_runs(seed)
    for name, config in runs.items():
      workdir = os.path.join(args.workdir, f"{name.replace(' ', '').replace('+', '_')}_s{seed}")
      print(f"=== {args.study}: {name}, seed {seed} -> {workdir}", flush=True)
      out = pipeline.run(config, workdir)
      for row, block in rows_for(args.study, name, out).items():
        per_seed.setdefault(row, []).append(block)
  table = summarize(per_seed)
  print(table)
  io_utils.atomic_write_text(os.path.join(args.workdir, "table.md"), table + "\n")
  io_utils.atomic_write_json(os.path.join(args.workdir, "table.json"), {
      "study": args.study, "seeds": args.seeds, "budget": {k: list(v) if isinstance(v, tuple)
                                                           else v for k, v in BUDGET.items()},
      "rows": {name: [{k: b.get(k) for k in ("top1_err", "many_acc", "medium_acc", "few_acc",
                                             "pseudo_label_acc")} for b in blocks]
               for name, blocks in per_seed.items()}})


if __name__ == "__main__":
  main()
