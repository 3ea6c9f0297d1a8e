"""Text <-> token ids, built from a GGUF file's vocabulary and merges or a tokenizer.json.

The BPE itself is the `tokenizers` library's (the implementation Hugging Face models ship
with); this module only assembles it: byte-level BPE in the GPT-2 style, the pre-tokenizer the
GGUF metadata names, and the control tokens kept whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer as BackendTokenizer, decoders, models, pre_tokenizers

# llama.cpp token types (gguf.TokenType): 3 = CONTROL, 4 = USER_DEFINED
_CONTROL, _USER_DEFINED = 3, 4

# `tokenizer.ggml.pre` names whose splitting is GPT-2's regex, optionally with digits one by one
_GPT2_SPLIT = {"gpt2", "default"}
_DIGITS_THEN_GPT2_SPLIT = {"smollm", "starcoder", "refact", "codeshell"}


class TokenizerError(ValueError):
    """The tokenizer description cannot be built."""


@dataclass
class Tokenizer:
    backend: BackendTokenizer
    bos_id: int | None = None
    eos_id: int | None = None
    add_bos: bool = False

    def encode(self, text: str) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if self.add_bos and self.bos_id is not None else ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(map(int, ids)), skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)


def _pre_tokenizer(pre: str, origin: str):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _GPT2_SPLIT:
        return byte_level
    if pre in _DIGITS_THEN_GPT2_SPLIT:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    supported = sorted(_GPT2_SPLIT | _DIGITS_THEN_GPT2_SPLIT)
    raise TokenizerError(f"{origin}: tokenizer.ggml.pre {pre!r} is not supported (supported: {supported})")


def bpe_tokenizer(tokens: list[str], merges: list[str], token_types: list[int] | None,
                  pre: str, origin: str) -> BackendTokenizer:
    """Byte-level BPE from a vocabulary (id order), "a b" merge strings and llama.cpp token types."""
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = []
    for rank, merge in enumerate(merges):
        left, sep, right = merge.partition(" ")
        if not sep:
            raise TokenizerError(f"{origin}: merge #{rank} {merge!r} is not two tokens separated by a space")
        pairs.append((left, right))
    backend = BackendTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = _pre_tokenizer(pre, origin)
    backend.decoder = decoders.ByteLevel()
    if token_types is not None:
        whole = [AddedToken(tokens[i], special=(kind == _CONTROL), normalized=False)
                 for i, kind in enumerate(token_types) if kind in (_CONTROL, _USER_DEFINED)]
        backend.add_special_tokens(whole)
    return backend


def tokenizer_from_gguf(reader, origin: str) -> Tokenizer:
    """The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata (model 'gpt2' only)."""

    def get(key: str, default=None):
        field = reader.fields.get(f"tokenizer.ggml.{key}")
        return default if field is None else field.contents()

    kind = get("model")
    if kind != "gpt2":
        raise TokenizerError(f"{origin}: tokenizer.ggml.model {kind!r} is not supported "
                             "(supported: 'gpt2', byte-level BPE)")
    tokens, merges = get("tokens"), get("merges")
    if not tokens or merges is None:
        raise TokenizerError(f"{origin}: GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
    backend = bpe_tokenizer(tokens, merges, get("token_type"), get("pre", "default"), origin)
    return Tokenizer(backend, bos_id=get("bos_token_id"), eos_id=get("eos_token_id"),
                     add_bos=bool(get("add_bos_token", False)))


def tokenizer_from_file(path: str | Path, eos_token: str | None = None) -> Tokenizer:
    """A Hugging Face tokenizer.json (a saved `tokenizers` pipeline)."""
    backend = BackendTokenizer.from_file(str(path))
    eos_id = backend.token_to_id(eos_token) if eos_token else None
    return Tokenizer(backend, eos_id=eos_id)
