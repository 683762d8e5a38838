"""Atomic file writes (a temporary file beside the target, fsync, then rename over it) and the
checksum that later stages compare.

A crash leaves either the old file or the new one, never half of one that looks complete.
In a multi-process run every process computes the same content and process 0 alone writes it
(the workdir is on storage that all hosts see).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from lt_jax import parallel


def atomic_write(path: str, write: Callable[[str], None]) -> None:
  """Calls write(tmp_path) and renames tmp_path to path once it returned (on process 0)."""
  if not parallel.is_main_process():
    return
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  os.close(fd)
  try:
    write(tmp)
    with open(tmp, "rb") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  def write(tmp):
    with open(tmp, "w") as f:
      f.write(text)
  atomic_write(path, write)


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str) -> str:
  """The file's SHA-256, hex: what a later stage compares to refuse a file changed since it
  was written."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def sha256_folder(path: str) -> str:
  """One SHA-256 over every file below `path`: each relative name, size and content, in
  sorted order, so a file changed, added, removed or renamed changes it."""
  digest = hashlib.sha256()
  files = sorted(os.path.relpath(os.path.join(root, name), path)
                 for root, _, names in os.walk(path) for name in names)
  for rel in files:
    full = os.path.join(path, rel)
    digest.update(f"{rel}\0{os.path.getsize(full)}\0".encode())
    with open(full, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()
