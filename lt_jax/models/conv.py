"""The models' 3x3 convolution, with a weight gradient that XLA:CPU computes quickly.

XLA:CPU lowers the weight gradient of a convolution (a contraction over batch and space that
leaves only a 3x3xCinxCout result) to a kernel that is tens of times slower than the forward
pass: on a 2-core CPU, 235 ms against 10 ms for one 16 -> 16 layer at batch 128 on 32x32 inputs,
and most of a ResNet-32 train step. `conv3x3_cpu` keeps XLA's forward pass and input gradient
and computes the weight gradient as nine matrix products, one per kernel tap: the tap's shifted
(and, at stride 2, strided) slice of the padded input, flattened to [pixels, Cin], contracted
with the output gradient [pixels, Cout]. The batch is walked in chunks of about 1 MiB of padded
input: over the whole batch at once the same products run from memory and are three times
slower, and in much smaller chunks the loop's per-iteration work (a pad, nine slices, nine
products, an add) outweighs the arithmetic.

`model.conv_impl` picks the implementation: `xla` (XLA's convolution and its autodiff),
`cpu_fast` (this custom VJP on every layer whose input holds at least `MIN_INPUT_BYTES`, XLA's
autodiff below), or `auto` (`cpu_fast` when JAX's default backend is the CPU, `xla` on GPU and
TPU, whose convolution gradients are fast). Both give the same forward values bit for bit;
gradients agree to float32 rounding (another summation order). The custom VJP defines reverse
mode only: forward-mode differentiation (`jax.jvp`) needs `conv_impl='xla'`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lt_jax.errors import ConfigError
from lt_jax.models.heads import kaiming_normal

Dtype = Any

CONV_IMPLS = ('auto', 'xla', 'cpu_fast')

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
_PADDING = ((1, 1), (1, 1))
# Layers whose input holds fewer bytes than this keep XLA's weight gradient: there it is about
# as fast, and it compiles faster (tests and small inputs are compile-bound). XLA's kernel slows
# down by an order of magnitude as the input outgrows the caches (16 -> 16 channels at 32x32:
# 3 ms at batch 8, 365 ms at batch 128), and in a whole model it adds transposed copies of the
# activations. 1 MiB takes every layer of a CIFAR ResNet from batch 64 on, none of an 8x8
# digits model at batch 128.
MIN_INPUT_BYTES = 1 << 20
# Bytes of padded input per chunk of the weight gradient (8 images of 32x32x16, 16 of 16x16x32,
# 32 of 8x8x64). Chosen in whole ResNet-32 train steps at batch 128, where 640 KiB to 1.25 MiB
# were fastest on a 2-core EPYC (1 MiB of L2 a core): 160 KiB was 15-19% slower, 2.5 MiB up to 9%,
# 5 MiB slower than 160 KiB. Timed alone, outside a train step, the weight gradient ranks the
# sizes differently; the whole step is what counts.
_CHUNK_BYTES = 1 << 20


def resolve_conv_impl(conv_impl: str) -> str:
  """`xla` or `cpu_fast` for a `model.conv_impl` value; `auto` decides by JAX's backend."""
  if conv_impl not in CONV_IMPLS:
    raise ConfigError(f'model.conv_impl={conv_impl!r} is unknown; choose one of {CONV_IMPLS} '
                      "('auto' picks cpu_fast on a CPU backend and xla elsewhere).")
  if conv_impl == 'auto':
    return 'cpu_fast' if jax.default_backend() == 'cpu' else 'xla'
  return conv_impl


def conv3x3_xla(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's convolution, padded by one pixel on every side like PyTorch's `padding=1`."""
  return lax.conv_general_dilated(x, kernel, (stride, stride), _PADDING,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _tap_slices(xp: jax.Array, stride: int, out_h: int, out_w: int):
  """For each tap (i, j), the pixels of the padded input `xp` that meet it: [N, out_h, out_w, C]."""
  n, _, _, c = xp.shape
  for i in range(3):
    for j in range(3):
      limit = (n, i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, c)
      yield lax.slice(xp, (0, i, j, 0), limit, (1, stride, stride, 1))


def _chunk_size(batch: int, bytes_per_image: int, chunk_bytes: int = _CHUNK_BYTES) -> int:
  """The largest divisor of `batch` whose images fit in `chunk_bytes` (at least 1)."""
  target = max(1, chunk_bytes // max(1, bytes_per_image))
  return max(d for d in range(1, min(batch, target) + 1) if batch % d == 0)


def weight_grad(x: jax.Array, dy: jax.Array, stride: int,
                chunk_bytes: int = _CHUNK_BYTES) -> jax.Array:
  """d(loss)/d(kernel) [3, 3, Cin, Cout] of `conv3x3_xla(x, kernel, stride)` given its `dy`.

  Walks the batch in chunks of at most `chunk_bytes` of padded input. Accumulates in float32
  whatever the input dtype (bfloat16 products of 10^5 pixels would lose the gradient's low
  bits), and returns float32.
  """
  n, h, w, c = x.shape
  _, out_h, out_w, d = dy.shape
  chunk = _chunk_size(n, (h + 2) * (w + 2) * c * x.dtype.itemsize, chunk_bytes)
  xs = x.reshape(n // chunk, chunk, h, w, c)
  dys = dy.reshape(n // chunk, chunk, out_h, out_w, d)

  def add_chunk(acc, chunk_arrays):
    xc, dyc = chunk_arrays
    xp = jnp.pad(xc, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dy_flat = dyc.reshape(-1, d)
    taps = [
        lax.dot_general(tap.reshape(-1, c), dy_flat, (((0,), (0,)), ((), ())),
                        preferred_element_type=jnp.float32)
        for tap in _tap_slices(xp, stride, out_h, out_w)
    ]
    return acc + jnp.stack(taps).reshape(3, 3, c, d), None

  acc, _ = lax.scan(add_chunk, jnp.zeros((3, 3, c, d), jnp.float32), (xs, dys))
  return acc


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_cpu(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`conv3x3_xla` with the weight gradient of `weight_grad` (reverse mode only)."""
  return conv3x3_xla(x, kernel, stride)


def _conv3x3_cpu_fwd(x, kernel, stride):
  return conv3x3_xla(x, kernel, stride), (x, kernel)


def _conv3x3_cpu_bwd(stride, residuals, dy):
  x, kernel = residuals
  # XLA's input gradient (a transposed convolution) is as fast as its forward pass: keep it.
  _, input_vjp = jax.vjp(lambda x: conv3x3_xla(x, kernel, stride), x)
  (dx,) = input_vjp(dy)
  dkernel = weight_grad(x, dy, stride).astype(kernel.dtype)
  return dx, dkernel


conv3x3_cpu.defvjp(_conv3x3_cpu_fwd, _conv3x3_cpu_bwd)

_IMPLS = {'xla': conv3x3_xla, 'cpu_fast': conv3x3_cpu}


class Conv3x3(nn.Module):
  """3x3 conv, no bias, padding 1 on every side, Kaiming-normal kernel `kernel` [3, 3, Cin, Cout].

  Declares the same parameter as `nn.Conv(features, (3, 3), use_bias=False)` (name, shape,
  float32 storage, initialiser), so checkpoints and weight maps do not depend on `conv_impl`.
  Computes in `dtype` (the input and kernel are cast to it).
  """

  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  conv_impl: str = 'auto'
  kernel_init: Any = kaiming_normal  # Fan-in (the CIFAR reference); ImageNet models: fan-out.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f'Conv3x3 expects NHWC input [batch, height, width, channels], got shape '
                       f'{x.shape}.')
    impl = _IMPLS[resolve_conv_impl(self.conv_impl)]
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features),
                        jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    if x.size * x.dtype.itemsize < MIN_INPUT_BYTES:
      impl = conv3x3_xla
    return impl(x, kernel, self.stride)
