"""A runnable model (spec + fp32 weights + optional tokenizer) and `load_model`."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import weights as W
from .reference import KVCache, forward, layer_weights
from .spec import ModelSpec, SpecError
from .tokenizer import Tokenizer, tokenizer_from_file, tokenizer_from_gguf
from .zoo import builtin_names, builtin_specs, get_spec, packaged_weights_hint, packaged_weights_path

CACHE_CHUNK = 256  # cache capacity grows in multiples of this many positions (then doubles)


class Model:
    """Prefill and decode steps over an explicit KV cache, plus sampling.

    A step writes into the cache it is given and returns the advanced cache; to branch a
    continuation, pass `cache.copy()`.
    """

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray],
                 tokenizer: Tokenizer | None = None, source: str = ""):
        self.spec = spec
        self.params = W.validate_params(spec, params, source or "weights")
        self.tokenizer = tokenizer
        self.source = source
        self._layers = [layer_weights(self.params, spec, i) for i in range(spec.n_layers)]

    def __repr__(self) -> str:
        return f"Model({self.spec.name!r}, {self.spec.n_params / 1e6:.1f}M params, source={self.source!r})"

    # ---- steps ------------------------------------------------------------------------------
    def new_cache(self, positions: int = 0) -> KVCache:
        capacity = min(self.spec.max_context, CACHE_CHUNK * max(1, math.ceil(positions / CACHE_CHUNK)))
        return KVCache.empty(self.spec, capacity)

    def _ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise ValueError("need at least one token id")
        bad = ids[(ids < 0) | (ids >= self.spec.vocab_size)]
        if bad.size:
            raise ValueError(f"token id {int(bad[0])} is outside the vocabulary [0, {self.spec.vocab_size})")
        return ids

    def prefill(self, token_ids: Sequence[int], cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
        """Logits [T, vocab] for every new position, and the cache holding them.

        With `cache` given, the tokens continue that sequence (chunked prefill).
        """
        ids = self._ids(token_ids)
        cache = self.new_cache(len(ids)) if cache is None else cache
        end = cache.length + len(ids)
        if end > self.spec.max_context:
            raise ValueError(f"sequence of {end} positions exceeds {self.spec.name}'s "
                             f"max_context {self.spec.max_context}")
        cache = cache.reserve(end, self.spec.max_context)
        logits = forward(ids, self.params, self._layers, self.spec, cache)  # [T, V]
        return logits, KVCache(cache.k, cache.v, end)

    def decode(self, token_id: int, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """Logits [vocab] for one new token appended to the cached sequence."""
        logits, cache = self.prefill([token_id], cache)
        return logits[0], cache

    # ---- generation -------------------------------------------------------------------------
    def generate(self, token_ids: Sequence[int], n: int, greedy: bool = True, *,
                 temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                 stop_at_eos: bool = False) -> list[int]:
        """`n` new token ids after a prompt: argmax, or sampled with a seeded generator."""
        rng = np.random.default_rng(seed)
        logits, cache = self.prefill(token_ids)
        last, out = logits[-1], []
        eos = self.tokenizer.eos_id if (stop_at_eos and self.tokenizer) else None
        for i in range(n):
            token = pick_token(last, rng, greedy, temperature, top_k)
            out.append(token)
            if token == eos or i == n - 1:
                break
            last, cache = self.decode(token, cache)
        return out

    def generate_text(self, prompt: str, n: int, **kwargs) -> str:
        """The prompt's continuation as text (needs a tokenizer)."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.spec.name!r} has no tokenizer (weights from {self.source!r})")
        return self.tokenizer.decode(self.generate(self.tokenizer.encode(prompt), n, **kwargs))


def pick_token(logits: np.ndarray, rng: np.random.Generator, greedy: bool,
               temperature: float = 1.0, top_k: int | None = None) -> int:
    """Greedy argmax, else a draw from softmax(logits / temperature) over the top_k largest."""
    # logits: [V]
    if greedy:
        return int(np.argmax(logits))
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.size:
        cutoff = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled < cutoff, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    return int(rng.choice(scaled.size, p=probs / probs.sum()))


# ---- loading --------------------------------------------------------------------------------
def _check_same_shapes(wanted: ModelSpec, found: ModelSpec, origin: str) -> None:
    """Weights from a file for a named model must be that model, not merely loadable."""
    exact = ("family", "n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff",
             "vocab_size", "tied_embeddings")
    close = ("norm_eps", "rope_theta")
    diffs = [f"{k} {getattr(found, k)!r} (expected {getattr(wanted, k)!r})" for k in exact
             if getattr(found, k) != getattr(wanted, k)]
    diffs += [f"{k} {getattr(found, k)!r} (expected {getattr(wanted, k)!r})" for k in close
              if (getattr(found, k) is None) != (getattr(wanted, k) is None)
              or (getattr(found, k) is not None and not math.isclose(getattr(found, k), getattr(wanted, k), rel_tol=1e-4))]
    if diffs:
        raise W.WeightsError(f"{origin}: not a {wanted.name} checkpoint: " + "; ".join(diffs))


def _from_gguf(path: Path, name: str | None) -> tuple[ModelSpec, dict, Tokenizer | None]:
    reader = W.open_gguf(path)
    spec = W.spec_from_gguf(reader, name or path.stem, str(path))
    tokenizer = tokenizer_from_gguf(reader, str(path)) if "tokenizer.ggml.model" in reader.fields else None
    return spec, W.read_gguf_weights(reader, spec, str(path)), tokenizer


def _hf_tokenizer(directory: Path) -> Tokenizer | None:
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None
    config = json.loads((directory / "config.json").read_text())
    tok = tokenizer_from_file(path)
    tok.eos_id = config.get("eos_token_id") if isinstance(config.get("eos_token_id"), int) else None
    return tok


def _from_path(path: Path, spec: ModelSpec | None) -> tuple[ModelSpec, dict, Tokenizer | None]:
    """Weights (and the spec they describe) from a .gguf file or an HF directory."""
    if path.is_dir():
        found = W.read_hf_config(path)
        if spec is not None:
            _check_same_shapes(spec, found, str(path))
        spec = spec or found
        return spec, W.load_hf_weights(path, spec), _hf_tokenizer(path)
    if path.is_file() and path.suffix == ".safetensors":
        raise W.WeightsError(f"{path}: a single .safetensors file holds no model configuration; give the "
                             "Hugging Face directory that holds it with config.json (and tokenizer.json)")
    if path.suffix == ".gguf" or path.is_file():
        found, params, tokenizer = _from_gguf(path, spec.name if spec else None)
        if spec is not None:
            _check_same_shapes(spec, found, str(path))
        return spec or found, params, tokenizer
    raise W.WeightsError(f"weights path {str(path)!r} does not exist (expected a .gguf file or a "
                         "directory with config.json and model.safetensors)")


def load_model(name_or_path: str | Path, weights: str | Path | dict = "auto", *, seed: int = 0) -> Model:
    """A runnable model. Nothing is downloaded: every source is local.

    name_or_path: a built-in name (`builtin_names()`), a .yaml model file, a .gguf file, or a
        Hugging Face directory (config.json + model.safetensors).
    weights: "auto" (the path's own weights, or the weights an installed package ships for a
        built-in name), "random" (seeded N(0, 0.02)), a .gguf file or HF directory whose shapes
        must match the named model, or a dict of arrays keyed by HF parameter names.
    """
    text = str(name_or_path)
    is_spec = text in builtin_specs() or Path(text).suffix in (".yaml", ".yml")
    if is_spec:
        spec = get_spec(text)
    else:
        path = Path(text)
        if not path.exists():
            raise SpecError(f"unknown model {text!r}: not a built-in name ({', '.join(builtin_names())}), "
                            "nor an existing .yaml file, .gguf file or Hugging Face directory")
        if isinstance(weights, str) and weights == "random":
            if path.suffix == ".safetensors" and path.is_file():
                _from_path(path, None)  # the error that names the file and says what to give instead
            spec = W.read_hf_config(path) if path.is_dir() else W.spec_from_gguf(W.open_gguf(path), path.stem, text)
            return Model(spec, W.random_weights(spec, seed), source=f"random(seed={seed})")
        if not (isinstance(weights, str) and weights == "auto"):
            raise ValueError(f"{text} carries its own weights; pass weights='auto' or 'random', not {weights!r}")
        spec, params, tokenizer = _from_path(path, None)
        return Model(spec, params, tokenizer, source=text)

    if isinstance(weights, dict):
        return Model(spec, weights, source="dict")
    if weights == "random":
        return Model(spec, W.random_weights(spec, seed), source=f"random(seed={seed})")
    if weights == "auto":
        packaged = packaged_weights_path(spec.name)
        if packaged is None:
            hint = packaged_weights_hint(spec.name)
            how = f"install them with {hint}, or " if hint else ""
            raise W.WeightsError(f"no local weights for {spec.name!r}: {how}pass weights='random', "
                                 "a .gguf file or a Hugging Face directory")
        weights = packaged
    _, params, tokenizer = _from_path(Path(weights), spec)
    return Model(spec, params, tokenizer, source=str(weights))
