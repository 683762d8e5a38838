"""Self-supervised pre-training: rotation prediction and contrastive learning (MoCo v2, SimCLR)."""
