"""Fashion-MNIST-LT SSP with MoCo v2 (grey images: colour jitter and grayscale act on the one
channel as brightness / contrast), then ResNet-32 + CE from the backbone.

  python run.py --config=configs/fmnistlt_ssp_moco_ce.py
"""

from configs import fmnistlt_ssp_ce


def get_config():
  c = fmnistlt_ssp_ce.get_config()
  c.pretrain.method = "moco"
  return c
