"""Trains and evaluates one lt_jax run.

  python run.py --config=configs/cifar10lt_ldam_drw.py --workdir=workdirs/c10_ldam_drw
  python run.py --config=configs/digits_lt_ce.py --config.loss.name=focal --workdir=/tmp/x

Everything the run writes lands in --workdir (default: workdirs/<config file name>).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from lt_jax import parallel
from lt_jax.errors import ConfigError, DataError
from lt_jax.pipeline import run

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and results.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
  parallel.initialize_distributed()
  workdir = FLAGS.workdir or os.path.join(
      "workdirs", os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0])
  try:
    run(FLAGS.config, workdir)
  except (ConfigError, DataError) as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  app.run(main)
