"""Learning modules: plain ``torch.nn.Module`` classes that see tensors, never files or raw ids."""

from graph_rec.models.fusion import FusionConfig, ModalityFusion

__all__ = ["FusionConfig", "ModalityFusion"]
