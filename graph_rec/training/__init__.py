"""Training: one generic trainer, samplers, losses, checkpoints."""

from graph_rec.training.config import TrainConfig
from graph_rec.training.trainer import TrainResult, fit, init_model

__all__ = ["TrainConfig", "TrainResult", "fit", "init_model"]
