"""A run's folder: what lives where, and the guard that keeps one folder to one config.

  <workdir>/config.json          the resolved config (a different config is refused once a
                                 run here saved anything: see `guard`)
  <workdir>/results.json         present only once the run finished (it is then read back,
                                 never retrained or overwritten); it records the SHA-256 of
                                 each checkpoint folder's final step, which a later stage
                                 checks before it reads one (see `check_checkpoint`)
  <workdir>/.lock                pid and host of the run working here (a second one refuses)
  <workdir>/parameters.txt       the model's parameter table
  <workdir>/checkpoints/last     the newest two train states, for resuming (from the older
                                 when the newer cannot be read)
  <workdir>/checkpoints/best     the selected model
  <workdir>/<stage>/...          a pipeline's stages, each a workdir of its own
  <workdir>/pseudo_labels/pseudo_labels.npz, report.json   the semi-supervised labels
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import ml_collections
from clu import parameter_overview

from lt_jax import checkpoint, io_utils, parallel
from lt_jax.config import differences, get_base_config
from lt_jax.errors import ConfigError, DataError

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
LOCK_FILE = ".lock"
PARAMETERS_FILE = "parameters.txt"
CHECKPOINT_KINDS = ("last", "best")
CHECKPOINTS_KEY = "checkpoints"  # results.json: {kind: {"step", "sha256"}} of the final steps.
PSEUDO_LABELS_FILE = "pseudo_labels.npz"
PSEUDO_LABEL_REPORT_FILE = "report.json"
PSEUDO_LABEL_PLOT_FILE = "pseudo_labels.png"


def checkpoint_dir(workdir: str, which: str = "last") -> str:
  if which not in CHECKPOINT_KINDS:
    raise ValueError(f"which={which!r}; use one of {CHECKPOINT_KINDS}.")
  return os.path.join(workdir, "checkpoints", which)


def stage_dir(workdir: str, stage: str) -> str:
  """A pipeline stage's own workdir (base, pseudo_labels, final, pretrain, probe)."""
  return os.path.join(workdir, stage)


def config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _read_json(path: str, fix: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:  # A damaged file: its writes are atomic.
    raise DataError(f"{path} is not valid JSON ({e}); {fix}") from e


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  return ml_collections.ConfigDict(_read_json(path, _CONFIG_FIX))


_CONFIG_FIX = "restore it from a copy, or use a new --workdir."


def read_results(workdir: str) -> dict | None:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return None
  return _read_json(path, "delete it and run the same command again: the run then evaluates "
                    "its last checkpoint and writes it anew.")


def holds_work(workdir: str) -> bool:
  """Whether `workdir` (its stages included) holds a checkpoint, results or pseudo-labels:
  what a resume reuses. A run that stopped before any of these left nothing to protect."""
  for root, dirs, files in os.walk(workdir):
    if RESULTS_FILE in files or PSEUDO_LABELS_FILE in files:
      return True
    if os.path.basename(os.path.dirname(root)) == "checkpoints" and \
        any(d.isdigit() for d in dirs):
      return True
    dirs[:] = [d for d in dirs if not d.isdigit() and d != "tb"]
  return False


def check_config(workdir: str, config: ml_collections.ConfigDict, ignore: tuple = ()) -> None:
  """Raises when `workdir` holds a run of a different config, naming the fields that differ
  (the dotted fields in `ignore` may differ)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  theirs = _renamed(_read_json(path, _CONFIG_FIX))
  defaults = config_json(get_base_config())
  ours = config_json(config)
  diff = sorted(d for d, _, _ in differences(theirs, ours)
                if d not in ignore and not _added_at_default(d, theirs, ours, defaults)
                and not _unused_by_both(d, theirs, ours))
  if diff:
    fix = "use a new --workdir, or the old config to resume that run."
    if any(d.endswith("num_epochs") for d in diff) and read_results(workdir) is not None:
      fix = ("a finished run is not extended, since its schedule (warm-up, lr decays, DRW) has "
             "run its course; to train on from its weights, use a new --workdir with "
             f"--config.model.init_from={workdir} --config.model.init_head=True.")
    raise ConfigError(
        f"workdir {workdir} holds a run with a different config ({', '.join(diff[:8])}"
        f"{' ...' if len(diff) > 8 else ''} differ); {fix}")


@contextlib.contextmanager
def lock(workdir: str, primary: bool = True):
  """Creates `workdir` and holds <workdir>/.lock (pid, host and the process's start time)
  while a run works in it, so a second run started on it refuses instead of mixing its files
  with the first's. A lock whose process is gone (on this host), or whose pid now belongs to a
  process started at another time (a reused pid), or that stayed empty, is stale and taken
  over; this process's own lock is re-entered (a pipeline runs stages inside its workdir).
  Only the `primary` host of a multi-host job locks. A folder made here and left empty is
  removed again."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} is a file, not a folder; choose another --workdir "
                      "(or move the file away).")
  created = not os.path.exists(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"cannot create the workdir {workdir} ({e.strerror}); choose another "
                      "--workdir.") from e
  path = os.path.join(workdir, LOCK_FILE)
  mine = primary and _acquire(workdir, path)
  try:
    yield
  finally:
    if mine:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    if created:
      with contextlib.suppress(OSError):
        os.rmdir(workdir)  # Only succeeds while empty.


def _acquire(workdir: str, path: str) -> bool:
  """Takes the lock file; False when this process holds it already."""
  host = socket.gethostname()
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      owner = _lock_owner(path)
      if owner is not None and owner[:2] == (os.getpid(), host):
        return False
      stale = _stale_because(path, owner, host)
      if stale:
        print(f"taking over the stale lock {path}: {stale}.", flush=True)
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
        continue
      who = f"pid {owner[0]} on {owner[1]}" if owner else "a run that is starting"
      raise ConfigError(f"workdir {workdir} is in use by another run ({who}, lock {path}); "
                        "wait for it to finish or stop it, or use another --workdir (if no "
                        f"run is using it, delete {path}).") from None
    except OSError as e:
      raise ConfigError(f"cannot write to the workdir {workdir} ({e.strerror}); choose a "
                        "writable --workdir with free space.") from e
    try:
      with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {host} {_start_time(os.getpid())}\n")
    except OSError as e:
      with contextlib.suppress(OSError):
        os.remove(path)
      raise ConfigError(f"cannot write to the workdir {workdir} ({e.strerror}); choose a "
                        "writable --workdir with free space.") from e
    return True
  raise ConfigError(f"cannot take the lock {path}: other runs keep taking it; use another "
                    "--workdir.")


EMPTY_LOCK_GRACE_S = 10.0  # A run writes its lock's line right after creating the file.


def _lock_owner(path: str) -> tuple[int, str, str] | None:
  """(pid, host, start time or '-') from a lock file; None while it is empty or unreadable.
  A lock written before start times were recorded has none."""
  try:
    with open(path) as f:
      fields = f.read().split()
    if len(fields) not in (2, 3):
      return None
    return int(fields[0]), fields[1], fields[2] if len(fields) == 3 else "-"
  except (OSError, ValueError):  # Gone, or still being written by its run.
    return None


def _stale_because(path: str, owner: tuple[int, str, str] | None, host: str) -> str | None:
  """Why a lock held by someone else is stale, or None while its run may still be working."""
  if owner is None:
    try:
      age = time.time() - os.path.getmtime(path)
    except OSError:
      return None
    return (f"it has been empty for {age:.0f} s, so the run that made it never started"
            if age > EMPTY_LOCK_GRACE_S else None)
  pid, lock_host, started = owner
  if lock_host != host:
    return None  # Another host's process: nothing here can tell whether it still runs.
  if not _alive(pid):
    return f"pid {pid} has ended"
  if started != "-" and _start_time(pid) not in (started, "-"):
    return f"pid {pid} is now another process (started at another time)"
  return None


def _start_time(pid: int) -> str:
  """When process `pid` started, in clock ticks after boot (Linux /proc); '-' where unknown.
  With the pid, it names a process: a reused pid has another start time."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      # Field 22; the command name (field 2) may hold spaces, so count after its ')'.
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return "-"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


def write_parameter_table(workdir: str, params) -> str:
  """Writes the parameter table (about 90 lines for a ResNet-32: too many for the console) to
  <workdir>/parameters.txt and returns the one line to print instead."""
  path = os.path.join(workdir, PARAMETERS_FILE)
  io_utils.atomic_write_text(path, parameter_overview.get_parameter_overview(params) + "\n")
  return f"{parameter_overview.count_parameters(params):,} parameters (table: {path})"


def guard(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """Returns the finished run's results; raises on a different config; else records ours.
  The config of a run that stopped before it saved anything (see holds_work: a bad setting or
  missing data found at its start) is replaced: there is nothing of it to protect."""
  os.makedirs(workdir, exist_ok=True)
  if holds_work(workdir):
    check_config(workdir, config)
  finished = read_results(workdir)
  if finished is None:
    io_utils.atomic_write_json(os.path.join(workdir, CONFIG_FILE), config_json(config))
  return finished


def finished_results(workdir: str, field: str) -> dict:
  """The results of a finished run that a config field points at (e.g. semi.base_workdir)."""
  finished = read_results(workdir)
  if finished is None:
    raise DataError(f"{field}={workdir!r} holds no finished run ({RESULTS_FILE} missing); "
                    "train it first or leave the field empty to train one here.")
  return finished


def write_results(workdir: str, results: dict) -> str:
  """Writes a stage's results.json, adding the checksums of its final checkpoints to
  `results` (so what the stage returns is what a rerun reads back); every process of a
  multi-process run waits until it is written, since a later stage may read it (decoupled
  classifiers read stage 1's)."""
  path = os.path.join(workdir, RESULTS_FILE)
  digests = checkpoint_digests(workdir)
  if digests:
    results[CHECKPOINTS_KEY] = digests
  io_utils.atomic_write_json(path, results)
  parallel.barrier(f"results written to {path}")
  return path


def checkpoint_digests(workdir: str) -> dict:
  """{kind: {"step", "sha256"}} of the newest step in each of the workdir's checkpoint
  folders."""
  out = {}
  for which in CHECKPOINT_KINDS:
    folder = checkpoint_dir(workdir, which)
    step = checkpoint.latest_step(folder)
    if step is not None:
      out[which] = {"step": step,
                    "sha256": io_utils.sha256_folder(os.path.join(folder, str(step)))}
  return out


def check_checkpoint(folder: str) -> None:
  """Refuses a finished run's `checkpoints/<kind>` folder whose newest step is not the one
  its results.json records, byte for byte: a later stage (pseudo-labeling, a decoupled
  classifier, SSP's fine-tuning) would otherwise build on a model its run never reported.
  Unfinished runs, and runs finished before results.json held checksums, are not checked."""
  folder = os.path.abspath(folder)
  if os.path.basename(os.path.dirname(folder)) != "checkpoints":
    return
  workdir = os.path.dirname(os.path.dirname(folder))
  recorded = ((read_results(workdir) or {}).get(CHECKPOINTS_KEY) or {}).get(
      os.path.basename(folder))
  if not recorded:
    return
  step = checkpoint.latest_step(folder)
  results_path = os.path.join(workdir, RESULTS_FILE)
  rebuild = (f"delete {workdir} and run the command that trained it again (for a pipeline's "
             "stage, the pipeline's command retrains it).")
  if step != recorded["step"]:
    raise DataError(f"{folder} holds step {step} but its run finished at step "
                    f"{recorded['step']} ({results_path}): the folder was changed after the "
                    "run finished; " + rebuild)
  if io_utils.sha256_folder(os.path.join(folder, str(step))) != recorded["sha256"]:
    raise DataError(f"the checkpoint {os.path.join(folder, str(step))} changed after its run "
                    f"finished (its SHA-256 is not the one {results_path} records); " + rebuild)


# Fields renamed since a run may have saved its config: old dotted name -> new one.
RENAMED_FIELDS = {"optim.reference_lr_bug": "optim.first_release_lr_schedule"}


def _renamed(saved: dict) -> dict:
  """A saved config with the fields renamed since under their current names."""
  for old, new in RENAMED_FIELDS.items():
    (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
    section = saved.get(old_section)
    if isinstance(section, dict) and old_key in section:
      saved.setdefault(new_section, {})[new_key] = section.pop(old_key)
  return saved


def _lookup(tree: dict, dotted: str):
  for key in dotted.split("."):
    if not isinstance(tree, dict) or key not in tree:
      return _MISSING
    tree = tree[key]
  return tree


_MISSING = object()


def _added_at_default(dotted: str, theirs: dict, ours: dict, defaults: dict) -> bool:
  """A field that a run's saved config predates, set to its default: the same run."""
  return (_lookup(theirs, dotted) is _MISSING
          and _lookup(ours, dotted) == _lookup(defaults, dotted))


# Sections that a run does not read unless the field named here is set; a default changed in
# one (decouple.update_bn_stats) must not make a finished plain run a different one.
_SECTION_IN_USE = {"decouple": lambda c: bool(c.get("methods")),
                   "grid": lambda c: bool(c.get("methods")),
                   "pretrain": lambda c: c.get("method", "none") != "none"}


def _unused_by_both(dotted: str, theirs: dict, ours: dict) -> bool:
  section = dotted.split(".")[0]
  in_use = _SECTION_IN_USE.get(section)
  return in_use is not None and "." in dotted and not any(
      in_use(c.get(section) or {}) for c in (theirs, ours))

