"""The model registry: config field `model.name` -> a classifier, and its compute dtypes."""

from typing import Any

import jax.numpy as jnp

from lt_jax.errors import ConfigError
from lt_jax.models.conv import resolve_conv_impl
from lt_jax.models.heads import HEADS
from lt_jax.models.resnet_cifar import (
    CifarResNet,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
    ResNetTiny,
)
from lt_jax.models.resnet_imagenet import ResNet10, ResNet10Tiny, ResNet50

Dtype = Any

# Config field model.dtype: the backbone's compute dtype (parameters stay float32).
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

MODELS = {
    'resnet20': ResNet20,
    'resnet32': ResNet32,
    'resnet44': ResNet44,
    'resnet56': ResNet56,
    'resnet110': ResNet110,
    'resnet_tiny': ResNetTiny,
    'resnet10': ResNet10,  # ImageNet-style (224x224 inputs): ImageNet-LT, iNaturalist.
    'resnet50': ResNet50,
    'resnet10_tiny': ResNet10Tiny,  # ResNet-10 at 1/8 of its widths, for tests and smoke runs.
}


def create_model(name: str, *, num_classes: int, head: str = 'linear',
                 dtype: str | Dtype = 'float32', frozen_backbone: bool = False,
                 frozen_bn_updates: bool = False, conv_impl: str = 'auto') -> CifarResNet:
  """Builds the model registered as `name` (config field `model.name`); fails on unknown names.

  `dtype` is a name from DTYPES (config field `model.dtype`) or a jnp dtype. `conv_impl`
  (`model.conv_impl`) is checked here, but `auto` is resolved when the model is traced, so a
  model built on one host follows the backend it runs on.
  """
  if isinstance(dtype, str):
    if dtype not in DTYPES:
      raise ConfigError(f'model.dtype={dtype!r} is unknown; choose one of {tuple(DTYPES)}.')
    dtype = DTYPES[dtype]
  if name not in MODELS:
    raise ConfigError(f'model.name={name!r} is not a known model; choose one of {sorted(MODELS)}.')
  if head not in HEADS:
    raise ConfigError(f'model.head={head!r} is not a known head; choose one of {sorted(HEADS)}.')
  resolve_conv_impl(conv_impl)
  return MODELS[name](num_classes=num_classes, head=head, dtype=dtype,
                      frozen_backbone=frozen_backbone, frozen_bn_updates=frozen_bn_updates,
                      conv_impl=conv_impl)


def from_config(model, num_classes: int) -> CifarResNet:
  """The classifier a config's `model` section describes, for `num_classes` classes. Fields a
  config.json written by an older version lacks keep their defaults."""
  return create_model(model.name, num_classes=num_classes, head=model.head,
                      dtype=model.get('dtype', 'float32'),
                      frozen_backbone=bool(model.get('freeze_backbone', False)),
                      frozen_bn_updates=bool(model.get('frozen_bn_updates', False)),
                      conv_impl=model.get('conv_impl', 'auto'))

