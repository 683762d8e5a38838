"""lt_jax: class-imbalanced (long-tailed) image classification in JAX/Flax."""

__version__ = "0.1.0"
