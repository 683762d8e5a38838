"""Fashion-MNIST-LT (rho 100): plain CE as stage 1, then cRT, LWS, tau-norm and post-hoc logit
adjustment on its frozen representation (Kang et al. 2020).

  apt-get install -y dataset-fashion-mnist   # IDX files in /usr/share/datasets/fashion-mnist
  python run.py --config=configs/fmnistlt_decouple.py
  # stage 1 from a rotation-pre-trained backbone (SSP, then CE):
  python run.py --config=configs/fmnistlt_decouple.py --config.pretrain.method=rotation

A largest class of 5,500 (5,500 ... 55) leaves 500 images per class for a balanced validation
split, on which tau is chosen and the best epoch selected (the one the second stages start
from). cRT and LWS keep the reference's ImageNet-LT settings (class-aware batches of 512, lr
0.2, cosine, weight decay 5e-4; 10 epochs of cRT, 5 of LWS).

Runtime: stage 1 (200 epochs), then cRT (10 epochs) and LWS (5): hours on a CPU; on an
  accelerator, not measured yet.
Paper: none: the paper has no Fashion-MNIST-LT runs.
"""

from configs import fmnistlt_ce


def get_config():
  c = fmnistlt_ce.get_config()
  c.dataset.img_max = 5500
  c.dataset.val_per_class = 500
  c.decouple.methods = ("crt", "lws", "tau_norm", "logit_adjust")
  return c
