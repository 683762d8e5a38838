"""CIFAR ResNets (He et al. 2016, Sec. 4.2) as in the reference's `resnet_cifar.py` (ResNet_s).

Three stages of basic blocks with 16, 32, 64 channels at strides 1, 2, 2, an option-A
(parameter-free) shortcut, global average pooling and a linear or cosine head. ResNet-32, the
paper's CIFAR/SVHN model, has 0.46M parameters (464,154 with a 10-class linear head).

Fidelity notes, each a place where a naive port would differ from PyTorch:

- Padding. Convs pad explicitly by one pixel on every side, like `padding=1`. Flax's 'SAME'
  pads (0, 1) at stride 2 on even inputs, which would sample the odd pixels instead of the even.
- BatchNorm momentum. PyTorch's `momentum=0.1` weighs the new batch; flax's `momentum` weighs
  the old average, so the same update is flax `momentum=0.9`. Epsilon 1e-5 in both.
- BatchNorm running variance. PyTorch updates it with the unbiased batch variance (divides by
  n - 1), flax with the biased one (divides by n); lt_jax keeps flax's. Here n = batch * H * W
  elements per channel, so the ratio n / (n - 1) is 1 + 7.6e-6 in the first stage (128 * 32 * 32)
  and 1 + 1.2e-4 in the last (128 * 8 * 8) at batch 128 on 32x32 images: far below the noise of
  the running average itself. Training-mode normalisation uses the biased variance in both.
- Initialisation. Kaiming-normal (fan-in, gain sqrt 2, not truncated) for every conv and for the
  linear head's kernel; the linear bias keeps PyTorch's default uniform(+-1/sqrt(fan_in)).
- Multi-device. Under `jit` with a batch sharded over devices, batch statistics are computed over
  the global batch (XLA inserts the reductions), so BatchNorm needs no `axis_name`.
- Convolution. `conv_impl` (`model.conv_impl`) chooses XLA's convolution or one whose weight
  gradient is fast on XLA:CPU (`lt_jax/models/conv.py`); parameters are the same either way.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lt_jax.errors import ConfigError
from lt_jax.models.conv import Conv3x3
from lt_jax.models.heads import HEADS

Dtype = Any


def conv3x3(features: int, stride: int = 1, *, dtype: Dtype = jnp.float32,
            conv_impl: str = 'auto', name: str | None = None) -> Conv3x3:
  """3x3 conv without bias, padded by one pixel on each side like PyTorch's `padding=1`."""
  return Conv3x3(features, stride, dtype=dtype, conv_impl=conv_impl, name=name)


def batch_norm(train: bool, *, dtype: Dtype = jnp.float32, name: str | None = None):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      name=name)


def shortcut_option_a(x: jax.Array, planes: int, stride: int) -> jax.Array:
  """Parameter-free shortcut: subsample spatially, zero-pad channels on both sides.

  The reference's `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))` in NHWC.
  Where the block doubles the width (every stage transition of the CIFAR ResNets) the split below
  is exactly planes // 4 in front and behind; other widths get the nearest symmetric split.
  """
  in_planes = x.shape[-1]
  if planes < in_planes:
    raise ValueError(f'option-A shortcut cannot shrink channels ({in_planes} -> {planes}).')
  front = (planes - in_planes) // 2
  back = planes - in_planes - front
  x = x[:, ::stride, ::stride, :]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (front, back)))


class BasicBlock(nn.Module):
  """conv3x3(stride)-BN-relu-conv3x3-BN, plus the (option-A) shortcut, then relu."""

  planes: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(conv3x3, dtype=self.dtype, conv_impl=self.conv_impl)
    y = conv(self.planes, self.stride, name='conv1')(x)
    y = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(y))
    y = conv(self.planes, name='conv2')(y)
    y = batch_norm(train, dtype=self.dtype, name='bn2')(y)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = shortcut_option_a(x, self.planes, self.stride)
    return nn.relu(y + x)


class CifarResNetBackbone(nn.Module):
  """Stem conv-BN-relu, one stage per entry of `stage_sizes`, global average pool.

  Returns features of shape [B, widths[-1]] for any input size and channel count. Submodule names
  follow the reference (`conv1`, `bn1`, `layer1_0` for `layer1.0`, ...) so weights map across.
  """

  stage_sizes: Sequence[int] = (5, 5, 5)
  widths: Sequence[int] = (16, 32, 64)
  dtype: Dtype = jnp.float32
  conv_impl: str = 'auto'  # auto | xla | cpu_fast: see lt_jax/models/conv.py

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if len(self.stage_sizes) != len(self.widths):
      raise ValueError(f'stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} '
                       'must have one entry per stage.')
    x = jnp.asarray(x, self.dtype)
    x = conv3x3(self.widths[0], dtype=self.dtype, conv_impl=self.conv_impl, name='conv1')(x)
    x = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(x))
    for i, (num_blocks, planes) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
      for j in range(num_blocks):
        stride = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(planes, stride, dtype=self.dtype, conv_impl=self.conv_impl,
                       name=f'layer{i + 1}_{j}')(x, train)
    return jnp.mean(x, axis=(1, 2))


class CifarResNet(nn.Module):
  """Backbone plus head; returns `(logits, features)`, both float32.

  The submodules are named `backbone` and `head`, so a pre-trained backbone is restored by
  replacing `params['backbone']` and `batch_stats['backbone']`. Features come back next to the
  logits so decoupled re-training and linear probes need no model change. The head runs in
  float32 whatever `dtype` is: its logits feed a softmax (scaled by s = 30 for the cosine head)
  where bfloat16's 8-bit mantissa would blur LDAM's margins.
  """

  num_classes: int
  stage_sizes: Sequence[int] = (5, 5, 5)
  widths: Sequence[int] = (16, 32, 64)
  head: str = 'linear'
  dtype: Dtype = jnp.float32
  # A frozen backbone runs in inference mode (running BatchNorm statistics, no updates) and
  # passes no gradient: only the head trains (linear probing, decoupled classifier training).
  frozen_backbone: bool = False
  # A frozen backbone's BatchNorm running statistics stay fixed unless this is set: then they
  # follow the training batches, as in the reference's cRT, whose backbone stays in train mode.
  frozen_bn_updates: bool = False
  conv_impl: str = 'auto'  # auto | xla | cpu_fast: see lt_jax/models/conv.py
  # How a linear (or LWS) head's kernel starts: a key of heads.KERNEL_INITS.
  head_kernel_init: str = 'kaiming_normal'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    if self.head not in HEADS:
      raise ConfigError(f'model.head={self.head!r} is not a known head; '
                        f'choose one of {sorted(HEADS)}.')
    features = self.backbone()(x, train and (not self.frozen_backbone or self.frozen_bn_updates))
    if self.frozen_backbone:
      features = jax.lax.stop_gradient(features)
    features = jnp.asarray(features, jnp.float32)
    init = {} if self.head == 'cosine' else {'kernel_init': self.head_kernel_init}
    logits = HEADS[self.head](self.num_classes, dtype=jnp.float32, name='head', **init)(features)
    return logits, features


  def backbone(self) -> nn.Module:
    return CifarResNetBackbone(self.stage_sizes, self.widths, self.dtype, self.conv_impl,
                               name='backbone')


ResNet20 = functools.partial(CifarResNet, stage_sizes=(3, 3, 3))
ResNet32 = functools.partial(CifarResNet, stage_sizes=(5, 5, 5))
ResNet44 = functools.partial(CifarResNet, stage_sizes=(7, 7, 7))
ResNet56 = functools.partial(CifarResNet, stage_sizes=(9, 9, 9))
ResNet110 = functools.partial(CifarResNet, stage_sizes=(18, 18, 18))
# For tests: one block per stage, a quarter of the width.
ResNetTiny = functools.partial(CifarResNet, stage_sizes=(1, 1, 1), widths=(4, 8, 16))
