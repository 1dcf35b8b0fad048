"""Training a supernet or a subnet from scratch (SPEC §4): config, the trainer loop, resume."""

from .config import TrainConfig, build_space
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "build_space", "train"]
