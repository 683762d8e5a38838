"""ImageNet-LT, ResNet-50, cross-entropy with instance-balanced batches: the reference's
ImageNet-LT recipe without pre-training (imagenet_inat/config/ImageNet_LT/feat_uniform.yaml of
YyzHarry/imbalanced-semi-self at 760f039, its HEAD).

  python run.py --config=configs/imagenetlt_ce.py --workdir=workdirs/imagenetlt_ce \\
      --config.dataset.data_dir=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Needs your own ImageNet (ILSVRC 2012) folder, the one holding train/ and val/, and the
ImageNet-LT split lists (ImageNet_LT_train.txt, _val.txt, _test.txt); docs/DATA.md says where to
get both (the folders default to ~/.lt_jax/data/imagenet and ~/.lt_jax/data/ImageNet_LT). The
recipe: SGD momentum 0.9, lr 0.2, weight decay 5e-4, cosine to 0 without warm-up, 90 epochs,
batch 128 (set by the reference's 28e6258, "minor fix on default values", and kept at HEAD; the
file's first version had 100), RandomResizedCrop(224) + flip + colour jitter. 128 splits over 1,
2, 4, 8 or 16 devices. 90 epochs of 906 steps through
a ResNet-50 is a multi-accelerator job: a CPU cannot run it in reasonable time. No accuracy is
quoted for this config: the paper's ImageNet-LT numbers are for SSP runs (48.7% top-1 error for
SSP + cRT with ResNet-50: configs/imagenetlt_ssp_crt.py).
On accelerators, --config.model.dtype=bfloat16 runs activations and convolutions in bf16
(parameters, optimiser, BatchNorm statistics, head and loss stay float32); the default float32
is the reference's.

Runtime: 90 epochs of 906 steps through a ResNet-50, a multi-accelerator job, not measured yet.
Paper: none for CE alone in the reference README; CE + SSP is 54.4% (imagenetlt_moco.py).
"""

from lt_jax.config import get_base_config


def get_config():
  c = get_base_config()
  c.dataset.name = "imagenet_lt"
  c.dataset.data_dir = "~/.lt_jax/data/imagenet"  # The image root the lists' paths are relative to.
  c.dataset.lists_dir = "~/.lt_jax/data/ImageNet_LT"  # The split lists.
  c.dataset.num_workers = 12  # The reference's loader workers; set to the host's cores.
  c.model.name = "resnet50"
  c.train.num_epochs = 90
  c.train.batch_size = 128
  c.train.eval_batch_size = 512
  c.train.checkpoint_every_epochs = 1  # An epoch is long: a stop or crash loses little.
  c.train.log_every_steps = 100
  c.optim.lr = 0.2
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.optim.warmup_epochs = 0
  return c
