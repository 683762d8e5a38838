"""Runs one tiny pipeline of each family (supervised, semi, SSP, decouple) into
argv[1]/<family>: tests/test_device_count.py runs it on 1 and on 8 (fake CPU) devices and
compares the two. Every forward-pass batch (100) leaves a remainder on 8 devices."""

import sys

import conftest  # noqa: F401  (the test suite's XLA flags and compilation cache)
from conftest import tiny_config

from lt_jax.pipeline import run

EPOCHS = {"train__num_epochs": 1, "optim__warmup_epochs": 0, "optim__decay_epochs": (),
          "optim__decay_factors": (), "train__eval_batch_size": 100}


def family_configs() -> dict:
  """{family: config}, each a few seconds of training on the bundled digits."""
  semi = tiny_config(**EPOCHS, dataset__img_max=40, train__batch_size=64)
  semi.semi.enabled, semi.semi.unlabeled_ratio = True, 1.0
  semi.semi.base_batch_size, semi.semi.label_batch_size = 32, 100
  ssp = tiny_config(**EPOCHS)
  ssp.pretrain.method, ssp.pretrain.probe_epochs, ssp.pretrain.num_epochs = "rotation", 0, 1
  decouple = tiny_config(**EPOCHS, decouple__tune_on="test")  # Stage 1: the supervised run.
  decouple.decouple.methods, decouple.decouple.num_epochs = ("crt", "tau_norm"), 1
  decouple.decouple.batch_size = 32
  # Grids on several devices: test_grid.py (split over device groups) and the benchmark
  # notebook's tiny grid on eight (test_notebook.py).
  return {"supervised": tiny_config(**EPOCHS), "semi": semi, "ssp": ssp,
          "decouple": decouple}


if __name__ == "__main__":
  for family, config in family_configs().items():
    if family == "decouple":
      config.decouple.stage1_workdir = f"{sys.argv[1]}/supervised"
    run(config, f"{sys.argv[1]}/{family}")
