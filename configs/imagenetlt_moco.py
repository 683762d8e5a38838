"""ImageNet-LT, ResNet-50: MoCo v2 pre-training on the long-tailed training images (labels
unused), then cross-entropy from the pre-trained backbone; the paper's "CE(Uniform) + SSP".

  python run.py --config=configs/imagenetlt_moco.py --workdir=workdirs/imagenetlt_moco \\
      --config.dataset.data_dir=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Needs your own ImageNet (ILSVRC 2012) folder and the ImageNet-LT split lists, as
configs/imagenetlt_ce.py (docs/DATA.md says where to get both). Stages: workdir/pretrain (MoCo
v2), workdir/final (configs/imagenetlt_ce.py's recipe, every backbone weight and BatchNorm
statistic loaded from the query encoder); `--config.pretrain.probe_epochs=N` adds a linear probe
of the frozen backbone in workdir/probe (the reference has none).

The pre-training is the reference's pretrain_moco.py (YyzHarry/imbalanced-semi-self at 920fe01):
200 epochs, batch 128, SGD momentum 0.9, lr 0.015 with MoCo's per-epoch cosine, weight decay
1e-4, queue 65,536, key-encoder momentum 0.999, temperature 0.2, a 2-layer MLP head as wide as
the backbone's features (2,048) to 128-d, and MoCo v2's augmentation: RandomResizedCrop(224,
scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2, Gaussian blur
(sigma 0.1-2) p 0.5, flip. lr 0.015 at batch 128 is MoCo's ImageNet default (0.03 at batch 256,
facebookresearch/moco README at 5670021) scaled linearly, as that README recommends; the
reference does not rescale it for other batches, and neither does lt_jax: set pretrain.lr with
pretrain.batch_size. The host crops (two per image), the device draws the rest of each view.
Unlike the reference (drop_last), an epoch has ceil(N / B) batches, the last topped up from the
next epoch's order. BatchNorm runs in 8 ghost groups (pretrain.bn_groups) for MoCo's
shuffle-BN. 200 epochs of 906 steps plus 90 supervised epochs through a ResNet-50 is a
multi-accelerator job; no runtime has been measured.
On accelerators, --config.model.dtype=bfloat16 runs activations and convolutions in bf16
(parameters, optimiser, BatchNorm statistics, head and loss stay float32); the default float32
is the reference's.

The reference README (7cccaa2) reports 54.4% top-1 error for CE(Uniform) + SSP with ResNet-50.

Runtime: 200 epochs of MoCo v2 and 90 of CE through a ResNet-50, a multi-accelerator job, not
  measured yet.
Paper: 54.4% top-1 error for CE(Uniform) + SSP (the reference README at 7cccaa2).
"""

from configs import imagenetlt_ce


def get_config():
  c = imagenetlt_ce.get_config()
  c.pretrain.method = "moco"
  c.pretrain.num_epochs = 200
  c.pretrain.batch_size = 128
  c.pretrain.lr = 0.015
  c.pretrain.weight_decay = 1e-4
  c.pretrain.momentum = 0.9
  c.pretrain.queue_size = 65536
  c.pretrain.encoder_momentum = 0.999
  c.pretrain.temperature = 0.2
  c.pretrain.proj_dim = 128
  c.pretrain.crop_scale = (0.2, 1.0)
  c.pretrain.blur = True
  c.pretrain.probe_epochs = 0  # The reference trains no linear probe.
  return c
