"""digits-LT (rho 10), ResNet-32: eight long-tail methods x three seeds trained as one grid.

  python run.py --config=configs/digits_lt_grid.py
  python run.py --config=configs/digits_lt_grid.py --config.grid.settings="('scratch','ssp','semi')"

Needs no download. The 24 models train together (one program; on a CPU each model's ops run
side by side, on an accelerator they are one batched computation); summary.md holds top-1 and
Many / Medium / Few error, mean ± std over the seeds, and summary.csv the numbers.
The labeled largest class is 40 images so that the `semi` setting finds a pool of 5 x |D_L|
in the training images the labeled subset leaves (the same D_L for every setting).

Runtime: 13 min from an empty compilation cache on a 2-core AMD EPYC with AVX-512 (2026-12-07):
  4 min 15 s of it compiling the 24 unrolled models, which the compilation cache saves on the
  next run.
Paper: none: the paper has no digits-LT runs.
"""

from configs import digits_lt_ce


def get_config():
  c = digits_lt_ce.get_config()
  c.dataset.img_max = 40  # 159 labeled digits; >= 85 left per class for the pool.
  c.grid.methods = ("ce", "focal", "reweight", "resample", "drw", "ldam_drw",
                    "balanced_softmax", "logit_adjust")
  c.grid.seeds = (0, 1, 2)
  c.pretrain.method = "rotation"  # For the `ssp` setting.
  c.pretrain.probe_epochs = 0
  c.semi.unlabeled_ratio = 1.0
  c.semi.unlabeled_factor = 5
  c.semi.base_batch_size = 64  # The scratch CE members are then the base models.
  c.grid.semi_batch_size = 128  # D_L + D_U at twice the base batch, as the reference.
  return c
