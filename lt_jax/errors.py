"""Errors that name the problem and the fix, raised before any work starts."""


class ConfigError(ValueError):
  """A config field holds an impossible or inconsistent value; the message names the field."""


class DataError(ValueError):
  """Data is missing or malformed; the message says which file is expected where, and how to
  get it."""
