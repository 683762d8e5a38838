"""CIFAR-10-LT (rho 100): plain CE as stage 1, then cRT, LWS, tau-norm and post-hoc logit
adjustment on its frozen representation (Kang et al. 2020).

  python run.py --config=configs/cifar10lt_decouple.py
  # stage 1 from a rotation-pre-trained backbone (SSP, then CE), then the same four:
  python run.py --config=configs/cifar10lt_decouple.py --config.pretrain.method=rotation
  # a stage 1 that already ran (its workdir; an SSP or semi-supervised pipeline's too):
  python run.py --config=configs/cifar10lt_decouple.py \\
      --config.decouple.stage1_workdir=workdirs/cifar10lt_ce

cRT and LWS keep the reference's ImageNet-LT settings (class-aware batches of 512, lr 0.2,
cosine, weight decay 5e-4; 10 epochs of cRT, 5 of LWS). CIFAR-10's training split holds exactly
the 5,000 images of the largest class, so no validation split is left: tau is chosen on the
test split (flagged as optimistic in the results), and the second stages start from stage 1's
last epoch. dataset.img_max=4500 and dataset.val_per_class=500 give a balanced validation split
for an honest choice of both.

Runtime: stage 1 (200 epochs), then cRT (10 epochs) and LWS (5), an accelerator job, not
  measured yet.
Paper: none for decoupled classifiers on CIFAR-10-LT; its stage 1, CE, is 29.64% top-1 error at
  rho 100.
"""

from configs import cifar10lt_ce


def get_config():
  c = cifar10lt_ce.get_config()
  c.decouple.methods = ("crt", "lws", "tau_norm", "logit_adjust")
  c.decouple.tune_on = "test"
  return c
