"""Workloads: model specs (shapes and analytic counts), weights, and a numpy reference forward
pass with explicit prefill/decode steps over a KV cache."""
from .model import Model, load_model, pick_token
from .reference import KVCache
from .spec import MatrixSpec, ModelSpec, SpecError
from .tokenizer import Tokenizer, TokenizerError
from .weights import WeightsError, random_weights
from .zoo import builtin_names, builtin_specs, get_spec, load_yaml_specs

__all__ = [
    "KVCache", "MatrixSpec", "Model", "ModelSpec", "SpecError", "Tokenizer", "TokenizerError",
    "WeightsError", "builtin_names", "builtin_specs", "get_spec", "load_model", "load_yaml_specs",
    "pick_token", "random_weights",
]
