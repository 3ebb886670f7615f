"""Policy models: the NNX decoder, HF / GGUF import and export, the model cache."""

from models.config import ModelConfig, RopeScaling
from models.loader import Policy, init, load, load_config, param_shardings, save_hf
from models.transformer import Decoder, KVCache, Steer

__all__ = ["Decoder", "KVCache", "ModelConfig", "Policy", "RopeScaling", "Steer", "init", "load", "load_config",
           "param_shardings", "save_hf"]
