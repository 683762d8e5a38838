"""Models: CIFAR ResNets (option-A shortcut) and ImageNet-style ResNet-10/50, with linear, cosine
or LWS heads, and a name registry."""

from lt_jax.models.conv import CONV_IMPLS, Conv3x3
from lt_jax.models.heads import HEADS, CosineHead, LinearHead
from lt_jax.models.registry import DTYPES, MODELS, create_model, from_config
from lt_jax.models.resnet_cifar import (
    BasicBlock,
    CifarResNet,
    CifarResNetBackbone,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
    ResNetTiny,
)
from lt_jax.models.resnet_imagenet import ImageNetResNet, ImageNetResNetBackbone, ResNet10, ResNet50

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
    'ImageNetResNet',
    'ImageNetResNetBackbone',
    'LinearHead',
    'ResNet10',
    'ResNet20',
    'ResNet32',
    'ResNet44',
    'ResNet56',
    'ResNet50',
    'ResNet110',
    'ResNetTiny',
    'create_model',
    'from_config',
]
