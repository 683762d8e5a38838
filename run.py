"""Trains and evaluates one lt_jax run.

  python run.py --config=configs/cifar10lt_ldam_drw.py --workdir=workdirs/c10_ldam_drw
  python run.py --config=configs/digits_lt_ce.py --config.loss.name=focal --workdir=/tmp/x

Everything the run writes lands in --workdir (default: workdirs/<config file name>). A bad
setting, missing data or a full disk stops it with one `error: ...` line naming the fix.
SIGTERM (preemption, a scheduler) saves a checkpoint at the next step boundary and exits 0; a
Ctrl-C does the same with exit code 130, a second Ctrl-C stops at once. The same command then
continues the run.

--check resolves and validates the config, checks each stage's batch against the devices and
looks for the data, without training or writing anything: exit status 0 when the run is
ready, 1 for a config or device-layout problem, 3 when only the data is absent.

Multi-process runs (several hosts): every process runs the same command, with --distributed
on a Cloud TPU pod slice or under SLURM, else with --coordinator_address, --num_processes and
--process_id.
"""

import difflib
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lt_jax import errors
from lt_jax.config import get_base_config
from lt_jax.errors import ConfigError, DataError

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and results.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes in all.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index, from 0.")
flags.DEFINE_integer("join_timeout", None, "Multi-process runs: seconds to wait for every "
                     "process to join before stopping with an error naming whom it waited for "
                     "(default 300, jax's own).")
flags.DEFINE_bool("distributed", False, "Multi-process runs whose environment describes the "
                  "job (Cloud TPU pod slice, SLURM, Open MPI): join it.")
flags.DEFINE_bool("check", False, "Check the config, the device layout and the data without "
                  "training; exit 0 (ready), 1 (a config or layout problem) or 3 (data absent).")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
  for logger in ("absl", "asyncio"):
    std_logging.getLogger(logger).addFilter(_ReportedOnce())
  sys.unraisablehook = _unraisable
  # Imported here, after the flags parsed: a broken --config fails before JAX loads.
  if FLAGS.check:
    from lt_jax import preflight
    _devices_or_exit()
    report = preflight.check(FLAGS.config)
    print(f"check: {FLAGS['config'].config_filename}\n{report.text}", flush=True)
    sys.exit(report.status)
  import jax

  from lt_jax import parallel
  from lt_jax.pipeline import run
  from lt_jax.train import preemption
  try:
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id, detect=FLAGS.distributed,
                                    join_timeout_s=FLAGS.join_timeout or parallel.JOIN_TIMEOUT_S)
  except ConfigError as e:
    raise SystemExit(f"error: {e}") from None
  _devices_or_exit()  # After joining: a multi-process job must join before any device use.
  preemption.install()  # After joining: the distributed runtime installs a SIGTERM handler.
  if not parallel.is_main_process():
    # Process 0 prints the progress and results of the whole job (the native libraries' lines
    # included); warnings and errors of every process still reach stderr.
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
  workdir = FLAGS.workdir or os.path.join(
      "workdirs", os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0])
  try:
    run(FLAGS.config, workdir)
  except (ConfigError, DataError) as e:
    raise SystemExit(f"error: {e}") from None
  except FloatingPointError as e:  # The driver's report of a divergence.
    from lt_jax.validate import divergence_suspects
    raise SystemExit(f"error: {e} The settings that most often cause it: "
                     f"{divergence_suspects(FLAGS.config)}.") from None
  except BaseException as e:
    # A second Ctrl-C's KeyboardInterrupt may come out wrapped by a C extension (SystemError),
    # or be swallowed by a finalizer, the run then stopping at its next window: one line.
    if isinstance(e, KeyboardInterrupt) or preemption.stopped_at_once():
      print(f"\ninterrupted; the run in {workdir} keeps its last checkpoint: run the same "
            "command to continue.", file=sys.stderr, flush=True)
      raise SystemExit(130) from None
    if isinstance(e, preemption.Stopped):
      print(str(e), file=sys.stderr, flush=True)
      raise SystemExit(130 if e.signal_name == "SIGINT" else 0) from None
    if not isinstance(e, Exception):
      raise
    message = (errors.describe_os_error(e, workdir)
               or errors.describe_lost_process(e, workdir, jax.process_count()))
    if message is None:
      raise
    # Orbax's background writers may still be failing on the same disk: end now, before they
    # report it again at interpreter shutdown (the next run clears their temporary folders).
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def _devices_or_exit() -> None:
  """JAX's devices, or one line when the platform asked for cannot start (JAX_PLATFORMS=cuda
  on a machine without a GPU raises a bare AssertionError inside JAX)."""
  import jax
  try:
    jax.devices()
  except (RuntimeError, AssertionError) as e:
    asked = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or "the default"
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SystemExit(f"error: JAX cannot start the platform(s) {asked} ({detail}); unset "
                     "JAX_PLATFORMS to use what this machine has, or install the JAX build for "
                     "that accelerator (e.g. pip install -U 'jax[cuda12]').") from None


def _unraisable(unraisable) -> None:
  """When a checkpoint write fails, orbax closes its event loop and TensorStore reports each
  write still pending on it as 'Event loop is closed'; the failure itself is reported once.
  Likewise a Ctrl-C raised inside a finalizer."""
  error = unraisable.exc_value
  if isinstance(error, KeyboardInterrupt):
    return  # A second Ctrl-C that landed in a finalizer: main() reports the stop.
  if not (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)):
    sys.__unraisablehook__(unraisable)


class _ReportedOnce(std_logging.Filter):
  """Drops library log records of a full disk or a denied write (orbax and asyncio log each
  failed background write with its traceback): main() reports them in one line."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else OSError(record.getMessage())
    return errors.describe_os_error(error, "") is None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a config file that is missing or broken, or an override of a
  field the config lacks, reported in one line instead of a traceback. `--config.<field>=None`
  sets a field back to None (absl would read 'None' as a string, or fail on a number)."""
  kept, unset = _none_overrides(argv)
  try:
    args = app.parse_flags_with_usage(kept)
    FLAGS.config.get("dataset")  # A config file that failed to load raises on first use.
    for field in unset:
      *parents, name = field.split(".")
      node = FLAGS.config
      for parent in parents:
        node = node[parent]
      setattr(node, name, None)  # Ranges say which fields need a number.
  except Exception as e:  # Whatever loading the user's file raised.
    raise SystemExit(f"error: {config_error(e, argv)}") from None
  except SystemExit as e:  # absl exits 1 after printing the help it was asked for.
    if e.code == 1 and {"--help", "-help", "-h", "--helpshort", "--helpfull", "-?"} & set(argv):
      raise SystemExit(0) from None
    raise
  return args


def _none_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """argv without its `--config.<field>=None` overrides, and those fields."""
  kept, unset = [], []
  for arg in argv:
    if arg.startswith("--config.") and arg.endswith("=None"):
      unset.append(arg[len("--config."):-len("=None")])
    else:
      kept.append(arg)
  return kept, unset


def config_error(e: Exception, argv: list[str]) -> str:
  path = _flag_value(argv, "config") or "?"
  example = "e.g. --config=configs/digits_lt_ce.py"
  if isinstance(e, SyntaxError):
    return (f"the config file {e.filename or path} has a syntax error at line {e.lineno}: "
            f"{e.msg}; fix the file.")
  if not os.path.isfile(path.split(":", 1)[0]):
    return f"the config file {path} does not exist; pass an experiment file, {example}."
  for override in _overrides(argv, "config"):
    unknown = _unknown_field(override)
    if unknown:
      return unknown
  first = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return (f"cannot load the config file {path} ({type(e).__name__}: {first}); it needs a "
          f"get_config() returning the config, {example}.")


def _flag_value(argv: list[str], name: str) -> str | None:
  for i, arg in enumerate(argv):
    for prefix in (f"--{name}=", f"-{name}="):
      if arg.startswith(prefix):
        return arg[len(prefix):]
    if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _overrides(argv: list[str], name: str) -> list[str]:
  """The dotted fields that argv overrides, e.g. 'train.batch_size'."""
  out = []
  for arg in argv:
    for prefix in (f"--{name}.", f"-{name}."):
      if arg.startswith(prefix):
        out.append(arg[len(prefix):].split("=", 1)[0])
  return out


def _unknown_field(dotted: str) -> str | None:
  """A message naming the first part of `dotted` that the base config lacks, else None."""
  node, path = get_base_config(), []
  for name in dotted.split("."):
    if not hasattr(node, "keys") or name not in node:
      where = ".".join(path)
      known = list(node.keys()) if hasattr(node, "keys") else []
      close = difflib.get_close_matches(name, known, n=1)
      hint = f"did you mean {'.'.join(path + close)}? " if close else ""
      return (f"--config.{dotted}: the config has no field {'.'.join(path + [name])}; {hint}"
              f"(the fields{' of ' + where if where else ''} and their defaults: "
              "lt_jax/config.py)")
    node, path = node[name], path + [name]
  return None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
