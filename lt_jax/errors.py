"""Errors that name the problem and the fix, raised before any work starts."""

import errno
import os


class ConfigError(ValueError):
  """A config field holds an impossible or inconsistent value; the message names the field."""


class DataError(ValueError):
  """Data is missing or malformed; the message says which file is expected where, and how to
  get it."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def describe_os_error(error: BaseException, workdir: str) -> str | None:
  """One line naming the fix for a full disk or a folder without write permission met while a
  run in `workdir` works (orbax and TensorStore may wrap the OSError or keep only its text);
  None for any other error, which deserves its traceback."""
  seen = error
  for _ in range(10):  # The chain of causes; never a cycle in practice, but bounded.
    if seen is None:
      return None
    number = getattr(seen, "errno", None)
    where = getattr(seen, "filename", None) or workdir
    if number in _FULL or "No space left on device" in str(seen):
      return (f"the disk is full (writing {where}); free some space, or move {workdir} to "
              "another disk, then run the same command to continue from the last checkpoint.")
    if number in _READ_ONLY:
      return (f"cannot access {where} ({os.strerror(number)}); fix its permissions, or choose "
              "a --workdir on a writable disk.")
    seen = seen.__cause__ or seen.__context__
  return None


# What the collectives report when a peer process of a multi-process job is gone.
_LOST_PEER = ("Connection reset by peer", "Connection closed by peer", "Connection refused",
              "Socket closed", "gloo", "heartbeat")


def describe_lost_process(error: BaseException, workdir: str, process_count: int) -> str | None:
  """One line for a multi-process job whose peer stopped mid-run (killed, out of memory, a
  lost host): the collectives fail with the transport's words; None for any other error."""
  if process_count < 2:
    return None
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  if not any(marker.lower() in str(error).lower() for marker in _LOST_PEER):
    return None
  return (f"another process of this {process_count}-process job stopped ({first[:160]}); "
          f"the run keeps its newest checkpoint under {workdir}: start every process again "
          "with the same command to resume from it.")

