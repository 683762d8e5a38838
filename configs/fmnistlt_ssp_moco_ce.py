"""Fashion-MNIST-LT SSP with MoCo v2 (grey images: colour jitter and grayscale act on the one
channel as brightness / contrast), then ResNet-32 + CE from the backbone.

  python run.py --config=configs/fmnistlt_ssp_moco_ce.py

Runtime: MoCo v2 (200 epochs), the probe and 200 epochs of CE: hours on a CPU; on an
  accelerator, not measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs.
"""

from configs import fmnistlt_ssp_ce


def get_config():
  c = fmnistlt_ssp_ce.get_config()
  c.pretrain.method = "moco"
  return c
