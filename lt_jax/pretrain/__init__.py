"""Self-supervised pre-training: rotation prediction and contrastive learning (MoCo v2, SimCLR)."""

# Config field pretrain.method.
METHODS = ("none", "rotation", "moco", "simclr")
