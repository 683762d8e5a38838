"""Classifier heads on top of backbone features.

`LinearHead` is the references' `nn.Linear` with their initialisation. The CIFAR networks apply
`kaiming_normal_` to every linear weight (the bias keeps PyTorch's default uniform); the
ImageNet-LT / iNaturalist classifier (`DotProductClassifier`) keeps PyTorch's default for both,
uniform(+-1/sqrt(fan_in)): `kernel_init` names which. `CosineHead` is the reference's
`NormedLinear`: it returns cosine similarities in [-1, 1], which LDAM scales by s = 30 inside
the loss. `ScaledLinearHead` is LWS's classifier (Kang et al. 2020): a linear head whose logits
each class scales by a learned factor; the decoupled stage restores the kernel and bias and
trains only the scales.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]

# Kaiming-normal, fan-in, gain sqrt(2): PyTorch's `init.kaiming_normal_` default, which the
# reference applies to every conv and linear weight. A plain (not truncated) normal, like PyTorch.
kaiming_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')

# F.normalize's default eps: the norm is clamped from below, so zero vectors map to zero.
NORMALIZE_EPS = 1e-12


def torch_linear_bias_init(fan_in: int) -> Initializer:
  """PyTorch's default `nn.Linear` bias init, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  A factory because the bound depends on the layer's input size, which a bias shape lacks.
  PyTorch's default weight init, kaiming_uniform_ with a = sqrt(5), has the same bound:
  gain sqrt(2 / (1 + 5)) times sqrt(3 / fan_in) is 1 / sqrt(fan_in).
  """
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key: jax.Array, shape, dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


# A linear head's kernel initialisers by name; each is a factory of the layer's fan-in.
KERNEL_INITS = {
    'kaiming_normal': lambda fan_in: kaiming_normal,  # The CIFAR references' _weights_init.
    'torch_default': torch_linear_bias_init,  # nn.Linear untouched: uniform(+-1/sqrt(fan_in)).
}


def unit_column_uniform_init(key: jax.Array, shape, dtype: Dtype = jnp.float32) -> jax.Array:
  """Uniform(-1, 1) entries, then every column (one per class) scaled to unit L2 norm.

  The distribution the reference gets from `uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)`:
  renorm caps each column's norm at 1e-5 (every column of a uniform draw exceeds that), and the
  product brings it back to exactly 1.
  """
  w = jax.random.uniform(key, shape, jnp.float32, minval=-1.0, maxval=1.0)
  return (w / jnp.linalg.norm(w, axis=0, keepdims=True)).astype(dtype)


def l2_normalize(x: jax.Array, axis: int, eps: float = NORMALIZE_EPS) -> jax.Array:
  """`x / max(||x||, eps)` like `F.normalize`, with finite gradients at x = 0.

  Clamping the squared norm (by eps**2) before the square root gives the same values as
  clamping the norm, but never differentiates sqrt at zero, which would give NaN.
  """
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, jnp.asarray(eps * eps, sq.dtype)))


class LinearHead(nn.Module):
  """Affine classifier, `features @ kernel + bias`, initialised as in the reference."""

  num_classes: int
  dtype: Dtype = jnp.float32
  kernel_init: str = 'kaiming_normal'  # A key of KERNEL_INITS.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _affine(self, x)


def _affine(head: nn.Module, x: jax.Array) -> jax.Array:
  """`x @ kernel + bias` with the parameters `kernel` and `bias` declared on `head`."""
  fan_in = x.shape[-1]
  kernel = head.param('kernel', KERNEL_INITS[head.kernel_init](fan_in),
                      (fan_in, head.num_classes), jnp.float32)
  bias = head.param('bias', torch_linear_bias_init(fan_in), (head.num_classes,), jnp.float32)
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=head.dtype)
  return x @ kernel + bias


class CosineHead(nn.Module):
  """Cosine-similarity classifier: `normalize(x, axis=1) @ normalize(W, axis=0)`.

  The kernel has shape [features, num_classes] like the reference's `NormedLinear.weight`; the
  output lies in [-1, 1] and carries no scale (LDAM's s = 30 belongs to the loss).
  """

  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
        'kernel', unit_column_uniform_init, (x.shape[-1], self.num_classes), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return l2_normalize(x, axis=-1) @ l2_normalize(kernel, axis=0)


class ScaledLinearHead(nn.Module):
  """`scales * (features @ kernel + bias)`, the scales starting at 1 (the plain head)."""

  num_classes: int
  dtype: Dtype = jnp.float32
  kernel_init: str = 'kaiming_normal'  # A key of KERNEL_INITS.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    logits = _affine(self, x)  # The parameters of LinearHead, under the same names.
    scales = self.param('scales', nn.initializers.ones, (self.num_classes,), jnp.float32)
    return logits * scales.astype(logits.dtype)


HEADS = {'linear': LinearHead, 'cosine': CosineHead, 'lws': ScaledLinearHead}
