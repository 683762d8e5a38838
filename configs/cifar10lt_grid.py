"""CIFAR-10-LT (rho 100), ResNet-32, the reference's 200-epoch schedule: eight long-tail methods
x three seeds, trained together as one grid (24 models in one program on one accelerator).

  python run.py --config=configs/cifar10lt_grid.py

The paper's CIFAR-10-LT numbers (top-1 error, rho 100) and the commands that reproduce them
(members land in workdirs/cifar10lt_grid/<setting>/<method>/seed_<s>; summary.md compares):

  CE 29.64, LDAM-DRW 22.97 (from scratch):
    python run.py --config=configs/cifar10lt_grid.py --config.grid.methods="('ce','ldam_drw')"
  CE + SSP 26.50, LDAM-DRW + SSP 22.17 (rotation pre-training, one per seed):
    ... --config.grid.methods="('ce','ldam_drw')" --config.grid.settings="('scratch','ssp')"
  CE + D_U 17.48, LDAM-DRW + D_U 14.96 (pseudo-labels on a 5x pool from 80M TinyImages):
    ... --config.grid.methods="('ce','ldam_drw')" --config.grid.settings="('scratch','semi')"
        --config.semi.tinyimages_path=/path/to/ti_80M_selected.pickle
    (TinyImages is withdrawn: bring the reference's file, or use --config.semi.pool_source=
    cinic10 or stl10_unlabeled, the open pools, whose numbers are not the paper's.)

The 12-model benchmark (4 methods x 3 seeds):
    ... --config.grid.methods="('ce','drw','ldam_drw','balanced_softmax')"

Runtime: 24 models of 200 epochs in one program, an accelerator job, not measured yet (the
  12-model benchmark's target: 5 minutes on one H100/H200).
Paper: as listed above, per method and setting.
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.grid.methods = ("ce", "focal", "reweight", "resample", "drw", "ldam_drw",
                    "balanced_softmax", "logit_adjust")
  c.grid.seeds = (0, 1, 2)
  c.pretrain.method = "rotation"  # The `ssp` setting: rotation, as the paper for CIFAR.
  c.pretrain.probe_epochs = 0
  c.semi.pool_source = "tinyimages"
  c.semi.tinyimages_path = "~/.lt_jax/data/ti_80M_selected.pickle"
  c.semi.unlabeled_ratio = 1.0
  c.semi.base_batch_size = 128  # The scratch CE members are the base models.
  c.grid.semi_batch_size = 256  # As the reference's train_semi.py.
  return c
