"""DINOv2 losses: DINO (CLS), iBOT (masked patches), KoLeo, teacher centering and block masking."""
