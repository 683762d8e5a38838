"""CIFAR-10-LT SSP with MoCo v2: contrastive pre-training on the imbalanced images (queue
4,096 for a 12k-image set, encoder momentum 0.999, temperature 0.2, 2-layer MLP head to 128-d,
shuffle-BN over 8 groups, cosine lr 0.015 at batch 128), then ResNet-32 + CE from the backbone.

  python run.py --config=configs/cifar10lt_ssp_moco_ce.py

An accelerator job. The paper uses MoCo v2 for ImageNet-LT / iNaturalist (configs/
imagenetlt_moco.py, imagenetlt_ssp_crt.py, inat18_ssp_crt.py) and rotation for CIFAR; this
config applies MoCo to CIFAR-10-LT.

Runtime: MoCo v2 (200 epochs), the probe and 200 epochs of CE, an accelerator job, not measured
  yet.
Paper: none: the paper pre-trains CIFAR with rotation (cifar10lt_ssp_ce.py: 26.50%).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.pretrain.method = "moco"
  return c
