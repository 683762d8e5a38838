"""Models: CIFAR ResNets (option-A shortcut) with linear or cosine heads, and a name registry."""

from lt_jax.models.conv import CONV_IMPLS, Conv3x3
from lt_jax.models.heads import HEADS, CosineHead, LinearHead
from lt_jax.models.resnet_cifar import (
    DTYPES,
    MODELS,
    BasicBlock,
    CifarResNet,
    CifarResNetBackbone,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
    ResNetTiny,
    create_model,
)

__all__ = [
    'CONV_IMPLS',
    'DTYPES',
    'HEADS',
    'MODELS',
    'BasicBlock',
    'CifarResNet',
    'CifarResNetBackbone',
    'Conv3x3',
    'CosineHead',
    'LinearHead',
    'ResNet20',
    'ResNet32',
    'ResNet44',
    'ResNet56',
    'ResNet110',
    'ResNetTiny',
    'create_model',
]
