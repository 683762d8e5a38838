"""The one documented base config: every knob, its default, and what it means.

Experiment files in configs/ call `get_base_config()` and override a few fields; any field can be
overridden on the command line (`--config.loss.name=ldam`). Defaults reproduce the reference
recipe (CIFAR-10-LT, rho 100, ResNet-32, CE, 200 epochs) unless a comment says otherwise.
"""

from __future__ import annotations

import copy

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Model init, sampling order and augmentation keys.

  # --- data -------------------------------------------------------------------------------
  c.dataset = ml_collections.ConfigDict()
  # cifar10 | cifar100 | svhn | fashion_mnist | digits | npz | image_folder (held on the
  # device) | imagenet_lt | inat18 | image_lists (image folders with split lists, decoded on
  # the host: docs/DATA.md).
  c.dataset.name = "cifar10"
  # files (archive folders / .mat / IDX / npz) | tfds. TFDS stores images shuffled: CIFAR's
  # are put back in the archive's order (by their `id`), SVHN's and Fashion-MNIST's carry no
  # position, so with tfds their long-tailed subset holds other images than the reference's
  # (the same counts per class).
  c.dataset.source = "files"
  # None: the default. imagenet_lt / inat18: the image root that the lists' paths are
  # relative to (the folder holding ImageNet's train/ and val/, or iNaturalist's train_val2018/).
  c.dataset.data_dir = config_dict.placeholder(str)
  # imagenet_lt / inat18: the folder holding the split lists (ImageNet_LT_train.txt, _val.txt,
  # _test.txt; iNaturalist18_train.txt, _val.txt), one 'relative/path label' per line.
  c.dataset.lists_dir = config_dict.placeholder(str)
  # imagenet_lt / inat18: the training crop and evaluation crop. image_folder: the square
  # size its images are read at when they differ in size (else their own size).
  c.dataset.image_size = 224
  c.dataset.resize_size = 256  # imagenet_lt / inat18: evaluation resizes the shorter side to it.
  # imagenet_lt / inat18: grain worker processes decoding and augmenting (0: in-process).
  c.dataset.num_workers = 0
  c.dataset.npz_path = config_dict.placeholder(str)  # For name='npz'.
  # image_folder without a test/ folder: the share of each class held out of train/ to test
  # on (a stratified draw with RandomState(0)).
  c.dataset.test_fraction = 0.2
  # rho = n_max / n_min; the reference's imb_factor is 1 / rho (rho 100 <-> imb_factor 0.01).
  c.dataset.imbalance_ratio = 100.0
  c.dataset.imb_type = "exp"  # exp | step | none | keep (every image: the data's own balance)
  # Images of the largest class. None: |train| / C as the reference (5000 for CIFAR-10, 500
  # for CIFAR-100); SVHN's default is 1000 as in the reference.
  c.dataset.img_max = config_dict.placeholder(int)
  # How the images reach the device: auto (the dataset's own way: arrays held on the device,
  # or ImageNet-LT / iNaturalist / image_lists decoded on the host) | host (an image_folder too
  # large to hold decoded: each batch read from its files on the host, sampled and augmented
  # exactly as on the device).
  c.dataset.feed = "auto"
  c.dataset.lt_seed = 0  # The reference's rand_number: numpy seed of the subset draw.
  # Balanced validation split held out of the training images before the subset is drawn; 0
  # means none, and model selection falls back to the test set (the reference's habit).
  c.dataset.val_per_class = 0

  c.augment = ml_collections.ConfigDict()
  c.augment.name = "crop_flip"  # crop_flip (random crop with zero padding + flip) | none
  c.augment.crop_padding = 4

  # --- model ------------------------------------------------------------------------------
  c.model = ml_collections.ConfigDict()
  # resnet20/32/44/56/110 | resnet_tiny (CIFAR-style) | resnet10 | resnet50 (ImageNet-style) |
  # resnet10_tiny (ResNet-10 at 1/8 width: smoke runs of the ImageNet-style path)
  c.model.name = "resnet32"
  # linear | cosine (the normalised head that LDAM uses) | lws (linear, per-class scales)
  c.model.head = "linear"
  # auto | xla | cpu_fast. cpu_fast keeps XLA's convolution but computes its weight gradient
  # as nine matmuls, which XLA:CPU runs several times faster; auto picks it when JAX's backend
  # is the CPU and xla on GPU/TPU. Same parameters and forward values either way.
  c.model.conv_impl = "auto"
  # A workdir or checkpoint whose backbone (every parameter and BatchNorm statistic) starts
  # this run; the head is re-initialised. SSP configs fill it from their pre-training stage.
  c.model.init_from = config_dict.placeholder(str)
  c.model.freeze_backbone = False  # Train the head only (linear probe); default fine-tunes all.
  # A frozen backbone keeps its BatchNorm running statistics (default), or updates them from
  # the training batches (True: the reference's cRT, whose backbone stays in train mode).
  c.model.frozen_bn_updates = False
  # With init_from: also restore the linear classifier (kernel, bias) instead of a fresh one
  # (LWS keeps stage 1's classifier and learns per-class scales, model.head='lws').
  c.model.init_head = False
  # Compute dtype of the backbone: float32 (the reference) | bfloat16 (activations and convs
  # in bf16; parameters, optimiser state, BatchNorm statistics, head and loss stay float32).
  c.model.dtype = "float32"

  # classify | rotation (the rotation-prediction pretext task: 4-way head, labels unused).
  c.task = "classify"

  # --- loss and train rule ----------------------------------------------------------------
  c.loss = ml_collections.ConfigDict()
  c.loss.name = "ce"  # ce | focal | ldam | balanced_softmax | logit_adjust
  c.loss.focal_gamma = 1.0
  # The reference applies the focal term to the class-weighted CE (p = p_t ** w_y), a bug that
  # only shows with Reweight / DRW. False (default): the weighted focal loss w_y (1 - p_t)^g CE;
  # True: the reference's form.
  c.loss.focal_reference_form = False
  c.loss.ldam_max_m = 0.5
  c.loss.ldam_s = 30.0
  c.loss.la_tau = 1.0  # Logit adjustment's tau.

  c.train = ml_collections.ConfigDict()
  c.train.rule = "none"  # none | reweight | resample | drw (the reference's train_rule)
  # instance | class_balanced | sqrt | progressive | class_aware (the decoupled stage's);
  # rule=resample uses its own sampler.
  c.train.sampler = "instance"
  c.train.samples_per_class = 4  # class_aware: images per class visit (num_samples_cls).
  c.train.cb_beta = 0.9999  # Class-balanced weights (Reweight, DRW, Resample).
  c.train.drw_epoch = 160  # DRW switches to class-balanced weights at this (0-based) epoch.
  c.train.num_epochs = 200
  c.train.batch_size = 128  # Global batch, split over every device.
  c.train.eval_batch_size = 500
  c.train.eval_every_epochs = 1
  c.train.checkpoint_every_epochs = 10
  c.train.log_every_steps = 50
  # Train steps per dispatch: k >= 2 runs up to k steps in one compiled loop (calls also end at
  # log boundaries and epoch ends; every k >= 2 gives bit-identical results), 1 one plain step
  # per call, 0 (auto) 1 on CPU backends (XLA:CPU runs convolutions in loop bodies far slower)
  # and 32 on accelerators.
  c.train.steps_per_call = 0
  # Model selection for the `best` block: auto (val when a validation split exists, else
  # test, the reference's habit) | val | test | last.
  c.train.select_on = "auto"

  # --- optimiser --------------------------------------------------------------------------
  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 2e-4  # Coupled (added to the gradient) on every parameter, as torch.
  c.optim.nesterov = False
  c.optim.schedule = "step"  # step | cosine
  # cosine: 0-based epoch e runs at lr * 0.5 * (1 + cos(pi * (e - warmup + offset) / (E -
  # warmup))). 1 is the ImageNet-LT / iNaturalist reference, whose loop steps its
  # CosineAnnealingLR before each epoch (run_networks.py `train`), so epochs run at t = 1..E and
  # the last one at lr 0; 0 starts at the full lr and ends one step short of 0.
  c.optim.cosine_offset = 1
  c.optim.warmup_epochs = 5  # lr = lr * (e + 1) / warmup for e < warmup.
  c.optim.decay_epochs = (160, 180)  # step: multiply by decay_factors[i] from decay_epochs[i].
  c.optim.decay_factors = (0.01, 0.0001)
  # The reference's first release (utils.py at 1c4df99) tests `epoch > 160` before
  # `epoch > 180`, so its x0.0001 stage never happens and the lr stays 0.001 to the end; its
  # current code (b91ad29) applies x0.0001 from epoch 180, as the default here. True
  # reproduces the first release (keeps only the first decay).
  c.optim.first_release_lr_schedule = False

  # --- semi-supervised: pseudo-label an unlabeled pool with a base model, train again --------
  c.semi = ml_collections.ConfigDict()
  c.semi.enabled = False  # One run: base model -> pseudo-labels -> final model.
  # same_split (training images the labeled subset left; on a list dataset, the images in its
  # training folders that no list names) | svhn_extra | tinyimages | npz |
  # cinic10 (CINIC-10's ImageNet-derived images) | stl10_unlabeled (TFDS stl10, 'unlabelled') |
  # image_folder (any folder of PNG / JPEG files). docs/GUIDE.md: which pool to pick.
  c.semi.pool_source = "same_split"
  c.semi.unlabeled_ratio = 1.0  # rho_U of the pool (1: balanced).
  # Which classes the pool's imbalance favours: consistent (the labeled set's head classes,
  # the paper's setting) | reversed (its tail classes: the pool's largest class is the labeled
  # set's smallest) | uniform (every class alike; needs unlabeled_ratio=1).
  c.semi.unlabeled_direction = "consistent"
  c.semi.unlabeled_factor = 5  # |D_U| = factor * |D_L|.
  # What the per-class rho_U draw runs on: labels (the pool's own: true, extrapolated, or
  # class folders; the reference) | predictions (the classes the frozen base model predicts;
  # the draw then happens in the pseudo-label stage) | auto (labels where the pool has them,
  # else predictions; STL-10's unlabelled split and label-less folders / .npz have none).
  c.semi.pool_draw_on = "auto"
  # A draw on predictions where the base model predicts a class for fewer images than rho_U
  # asks: stop (name the short classes and what helps) | take_available (take every image it
  # predicts for them; report.json records the shortfall per class).
  c.semi.short_class_policy = "stop"
  c.semi.tinyimages_path = config_dict.placeholder(str)  # ti_80M_selected.pickle (bring your own)
  c.semi.pool_npz_path = config_dict.placeholder(str)  # x_unlabeled [, y_unlabeled]
  # The folder holding CINIC-10's train/ valid/ test/ (or a CINIC-10/ folder holding them).
  c.semi.cinic10_dir = "~/.lt_jax/data/cinic10"
  c.semi.cinic10_splits = ("train", "valid", "test")  # Whose ImageNet-derived images to use.
  # A folder of PNG / JPEG files; top-level sub-folders named by class id or class name
  # label their images (used to draw on labels and to measure pseudo-labels).
  c.semi.image_folder = config_dict.placeholder(str)
  c.semi.tfds_data_dir = config_dict.placeholder(str)  # stl10's TFDS folder; None: TFDS's default
  c.semi.base_workdir = config_dict.placeholder(str)  # Reuse a trained base model.
  c.semi.base_checkpoint = "last"  # last | best: which base checkpoint labels the pool.
  c.semi.base_batch_size = 128  # The base model trains with the supervised recipe's batch.
  c.semi.label_batch_size = 1024  # Forward-pass batch of the pseudo-labeler.
  c.semi.confidence_threshold = config_dict.placeholder(float)  # Keep confidence >= t.
  c.semi.per_class_max = config_dict.placeholder(int)  # Keep <= k per predicted class.
  # None: D_L and D_U concatenated and shuffled (the reference). A fraction f: every batch holds
  # round(f * B) pseudo-labeled examples, loss = L_labeled + unlabeled_weight * L_unlabeled.
  c.semi.unlabeled_batch_fraction = config_dict.placeholder(float)
  c.semi.unlabeled_weight = 1.0
  c.semi.pseudo_labels = config_dict.placeholder(str)  # Set by the pipeline's final stage.

  # --- self-supervised pre-training (SSP) of the backbone, then train from it -------------
  c.pretrain = ml_collections.ConfigDict()
  c.pretrain.method = "none"  # none | rotation | moco | simclr
  c.pretrain.num_epochs = config_dict.placeholder(int)  # None: train.num_epochs.
  c.pretrain.batch_size = config_dict.placeholder(int)  # None: train.batch_size.
  c.pretrain.lr = 0.015  # Contrastive: cosine schedule from this lr (MoCo v2 at batch 128).
  c.pretrain.weight_decay = 1e-4
  c.pretrain.momentum = 0.9
  c.pretrain.queue_size = 4096  # MoCo negatives (65,536 for ImageNet-size data).
  c.pretrain.encoder_momentum = 0.999
  c.pretrain.temperature = 0.2
  c.pretrain.proj_dim = 128
  # Hidden width of the projection MLP; None: the backbone's feature width, as the
  # reference's moco/builder.py (92c5fe6: dim_mlp = the encoder's fc input width).
  c.pretrain.proj_hidden = config_dict.placeholder(int)
  c.pretrain.bn_groups = 8  # MoCo's shuffle-BN across this many groups of the batch.
  # Random resized crop's area range for both views: MoCo v2's (0.2, 1); SimCLR's own recipe
  # is (0.08, 1), which method=simclr does not switch to by itself.
  c.pretrain.crop_scale = (0.2, 1.0)
  c.pretrain.blur = True
  c.pretrain.probe_epochs = 30  # Linear probe (frozen features) to score the backbone.

  # --- a grid of runs: methods x seeds (x settings), trained together -----------------------
  c.grid = ml_collections.ConfigDict()
  # Names from lt_jax/methods.py (ce, focal, reweight, resample, drw, ldam_drw, ...); a non-empty
  # tuple makes run.py train the grid instead of one run. Every other field of this config is
  # shared by all members.
  c.grid.methods = ()
  c.grid.seeds = (0, 1, 2)
  # scratch (the method from random weights) | ssp (from a pretrain.method backbone, one
  # pre-training per seed) | semi (on D_L + pseudo-labels, one base model and one pseudo-label
  # file per seed, the semi.* fields describing the pool).
  c.grid.settings = ("scratch",)
  # Batch of the semi members (D_L + pseudo-labeled D_U); None: train.batch_size. The reference
  # trains its semi-supervised models at 256 and its base models at 128 (semi.base_batch_size).
  c.grid.semi_batch_size = config_dict.placeholder(int)
  # How the models of one program share its step: auto (unroll on CPU backends, vmap on
  # accelerators and whenever devices_per_model splits the models) | vmap (one batched
  # computation) | unroll (each model's own ops side by side).
  c.grid.member_map = "auto"
  c.grid.max_models_per_program = 0  # 0: no cap; else split bigger programs (device memory).
  # 0: every model on every device, its batch split over all of them. n > 0: the devices form
  # groups of n and a program's models are split over the groups (vmap), each model's batch
  # over its group's n devices; small models then skip the gradient exchange over every device.
  c.grid.devices_per_model = 0

  # --- decoupled classifier (Kang et al. 2020), after stage 1 -------------------------------
  c.decouple = ml_collections.ConfigDict()
  # crt | lws | tau_norm | logit_adjust; a non-empty tuple makes run.py train stage 1 (this
  # config without decouple: plain, SSP or semi-supervised) in workdir/stage1 and then each
  # method on its representation in workdir/<method>.
  c.decouple.methods = ()
  c.decouple.stage1_workdir = config_dict.placeholder(str)  # A finished stage 1 to start from.
  # Which stage-1 checkpoint cRT, LWS, tau-norm and post-hoc LA start from. auto: the best on
  # validation where stage 1 selected on a validation split (the references load
  # `state_dict_best`), else the last (a best chosen on test would leak it), said in
  # results.json. best | last force one.
  c.decouple.stage1_checkpoint = "auto"
  # cRT / LWS: the reference's ImageNet-LT settings (cls_crt.yaml, cls_lws.yaml): class-aware
  # sampling (train.samples_per_class in a row), cosine schedule to 0 (optim.cosine_offset 1),
  # no warm-up, plain CE; cRT trains num_epochs, LWS lws_num_epochs (5 in both datasets').
  c.decouple.num_epochs = 10
  c.decouple.lws_num_epochs = 5
  c.decouple.batch_size = 512
  c.decouple.lr = 0.2
  c.decouple.momentum = 0.9
  c.decouple.weight_decay = 5e-4
  # The reference keeps the frozen backbone in train mode (`model.train()` before every epoch),
  # so BatchNorm uses batch statistics and its running statistics follow the class-balanced
  # batches; False freezes them (see model.frozen_bn_updates).
  c.decouple.update_bn_stats = True
  # tau-norm (w_j / ||w_j||^tau, no bias) and post-hoc logit adjustment (logits - tau log prior):
  # every tau is scored on the split named here; test is optimistic and flagged in results.
  c.decouple.taus = tuple(round(0.1 * i, 1) for i in range(21))
  c.decouple.tune_on = "val"  # val (needs dataset.val_per_class > 0) | test
  return c


def set_fields(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """Sets dotted fields of `config` in place (its fields keep their types, which command-line
  overrides rely on) and returns it: set_fields(c, **{"train.batch_size": 256})."""
  for dotted, value in fields.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


def override(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields replaced: override(c, **{"train.batch_size": 256})."""
  return set_fields(ml_collections.ConfigDict(copy.deepcopy(config.to_dict())), **fields)


def differences(a: dict, b: dict, prefix: str = "") -> list[tuple[str, object, object]]:
  """(dotted field, value in a, value in b) wherever two config dicts (as JSON) differ,
  sorted by field; a section present on one side only is one entry."""
  out = []
  for key in sorted(set(a) | set(b)):
    x, y = a.get(key), b.get(key)
    if isinstance(x, dict) and isinstance(y, dict):
      out += differences(x, y, f"{prefix}{key}.")
    elif x != y:
      out.append((f"{prefix}{key}", x, y))
  return out

