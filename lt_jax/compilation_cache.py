"""JAX's persistent compilation cache, on by default: a second run of the same config (a
resumed run, the next stage of a pipeline, `make demo` again) loads its compiled programs
instead of compiling them again.

The folder is `$LT_JAX_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/lt_jax/xla` (default
`~/.cache/lt_jax/xla`). `LT_JAX_COMPILATION_CACHE=off` turns the cache off. A cache that JAX
was already given (`JAX_COMPILATION_CACHE_DIR`, or `jax.config` in a notebook) is left as it
is. Programs that compile in under a second are not stored (JAX's default threshold), and the
least recently used ones go when the folder passes 4 GiB.
"""

from __future__ import annotations

import os

import jax

ENV = "LT_JAX_COMPILATION_CACHE"
OFF = ("0", "off", "false", "no", "none")
MAX_BYTES = 4 << 30  # The least recently used programs go beyond this.


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lt_jax", "xla")


def enable() -> str | None:
  """Points JAX at the cache folder unless it is turned off or already set; returns the
  folder in use (None: no cache)."""
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  setting = os.environ.get(ENV, "").strip()
  if setting.lower() in OFF:
    return None
  folder = os.path.expanduser(setting) if setting else default_dir()
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return None  # A read-only home: run without the cache rather than fail.
  jax.config.update("jax_compilation_cache_dir", folder)
  if jax.config.jax_compilation_cache_max_size == -1:  # JAX's default: no limit.
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return folder
