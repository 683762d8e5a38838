"""Experiment configs: each file's get_config() overrides a few fields of lt_jax.config's base.

Files import each other as `configs.<name>`, which resolves when the repository root is on
sys.path (as it is for `python run.py` and for notebooks started there).
"""
