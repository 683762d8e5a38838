"""ImageNet-style ResNets (He et al. 2016), as the reference's ResNetFeature.py (imagenet_inat).

ResNet-10 (basic blocks 1, 1, 1, 1: 512 features) and ResNet-50 (bottlenecks 3, 4, 6, 3: 2,048
features), the models of the paper's ImageNet-LT and iNaturalist 2018 results. A 7x7 stride-2
stem with BatchNorm, ReLU and a 3x3 stride-2 max pool, four stages at 64, 128, 256, 512 planes
(x4 for bottlenecks), global average pooling. As in the reference:

- Every convolution's kernel is drawn from N(0, 2 / (k * k * out_channels)) (fan-out), every
  BatchNorm starts at scale 1, bias 0 (momentum 0.1 in PyTorch's convention, eps 1e-5).
- The bottleneck strides in its 3x3 convolution (ResNet v1.5), and a block whose stride or width
  changes takes a 1x1 convolution + BatchNorm shortcut.
- The reference pools with AvgPool2d(7), which is the global mean at 224x224 inputs; here the mean
  is global at any input size.

Padding is explicit (3 for the stem, 1 for 3x3 convolutions and the pool), like PyTorch's.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lt_jax.models.conv import Conv3x3
from lt_jax.models.resnet_cifar import CifarResNet, batch_norm

Dtype = Any

fan_out_normal = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def conv(features: int, kernel: int, stride: int, *, dtype: Dtype, name: str) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=False, kernel_init=fan_out_normal, dtype=dtype, param_dtype=jnp.float32,
                 name=name)


class ImageNetBlock(nn.Module):
  """A basic block (two 3x3) or a bottleneck (1x1, 3x3 with the stride, 1x1 to 4x planes),
  BatchNorm after each convolution, the shortcut added before the last ReLU."""

  planes: int
  stride: int = 1
  bottleneck: bool = False
  dtype: Dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: batch_norm(train, dtype=self.dtype, name=name)
    c3 = lambda planes, stride, name: Conv3x3(planes, stride, dtype=self.dtype,
                                              conv_impl=self.conv_impl,
                                              kernel_init=fan_out_normal, name=name)
    if self.bottleneck:
      out_planes = 4 * self.planes
      y = nn.relu(bn('bn1')(conv(self.planes, 1, 1, dtype=self.dtype, name='conv1')(x)))
      y = nn.relu(bn('bn2')(c3(self.planes, self.stride, 'conv2')(y)))
      y = bn('bn3')(conv(out_planes, 1, 1, dtype=self.dtype, name='conv3')(y))
    else:
      out_planes = self.planes
      y = nn.relu(bn('bn1')(c3(self.planes, self.stride, 'conv1')(x)))
      y = bn('bn2')(c3(self.planes, 1, 'conv2')(y))
    if self.stride != 1 or x.shape[-1] != out_planes:
      x = bn('downsample_bn')(conv(out_planes, 1, self.stride, dtype=self.dtype,
                                   name='downsample_conv')(x))
    return nn.relu(y + x)


class ImageNetResNetBackbone(nn.Module):
  """Stem, four stages, global average pool: features [B, planes[-1] (x4 for bottlenecks)].
  Submodule names follow the reference (`conv1`, `bn1`, `layer1_0` for `layer1.0`, ...)."""

  stage_sizes: Sequence[int] = (1, 1, 1, 1)
  widths: Sequence[int] = (64, 128, 256, 512)
  bottleneck: bool = False
  dtype: Dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = jnp.asarray(x, self.dtype)
    x = conv(self.widths[0], 7, 2, dtype=self.dtype, name='conv1')(x)
    x = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, (num_blocks, planes) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
      for j in range(num_blocks):
        stride = 2 if i > 0 and j == 0 else 1
        x = ImageNetBlock(planes, stride, self.bottleneck, dtype=self.dtype,
                          conv_impl=self.conv_impl, name=f'layer{i + 1}_{j}')(x, train)
    return jnp.mean(x, axis=(1, 2))


class ImageNetResNet(CifarResNet):
  """The classifier of lt_jax/models/resnet_cifar.py (head, frozen backbone, features next to
  the logits) on an ImageNet-style backbone. Its linear head keeps PyTorch's default
  initialisation, as the reference's `DotProductClassifier` (a plain `nn.Linear`; the
  backbone's init loop touches only convolutions and BatchNorm)."""

  bottleneck: bool = False
  head_kernel_init: str = 'torch_default'

  def backbone(self) -> nn.Module:
    return ImageNetResNetBackbone(self.stage_sizes, self.widths, self.bottleneck, self.dtype,
                                  self.conv_impl, name='backbone')


IMAGENET_WIDTHS = (64, 128, 256, 512)
ResNet10 = functools.partial(ImageNetResNet, stage_sizes=(1, 1, 1, 1), widths=IMAGENET_WIDTHS)
ResNet50 = functools.partial(ImageNetResNet, stage_sizes=(3, 4, 6, 3), widths=IMAGENET_WIDTHS,
                             bottleneck=True)
# ResNet-10's layout at an eighth of its widths: the list-dataset path end to end in seconds on
# a CPU (tests, smoke runs of a new image folder), not a model to report.
ResNet10Tiny = functools.partial(ImageNetResNet, stage_sizes=(1, 1, 1, 1), widths=(8, 16, 32, 64))
