"""Text encoders: one interface over the packaged MiniLM, any local Hugging Face folder, and the hashed fallback."""

from __future__ import annotations

import pytest
import torch

from tracker.config import GroundingConfig
from tracker.errors import ConfigError
from tracker.models.text import HashedTextEncoder, PretrainedTextEncoder, build_text_encoder, masked_mean


def hashed(max_tokens: int = 6) -> HashedTextEncoder:
    torch.manual_seed(0)
    return HashedTextEncoder(dim=16, max_tokens=max_tokens, buckets=256, layers=1, num_heads=2).eval()


def test_hashed_encoder_shapes_padding_and_pooling():
    enc = hashed()
    out = enc(["the white boat", "a dog", "x " * 5000])
    assert out.tokens.shape == (3, 6, 16) and out.pooled.shape == (3, 16)
    # Real words are not padding; the rest is; a 5,000-word query is cut to max_tokens.
    assert out.padding.tolist() == [
        [False, False, False, True, True, True],
        [False, False, True, True, True, True],
        [False] * 6,
    ]
    assert torch.allclose(out.pooled, masked_mean(out.tokens, out.padding))
    assert torch.allclose(out.pooled[1], out.tokens[1, :2].mean(0), atol=1e-6)


def test_hashed_encoder_handles_non_latin_and_unseen_words():
    enc = hashed()
    out = enc(["北京的船", "лодка", "zyxwv"])
    assert (~out.padding).sum(1).tolist() == [1, 1, 1]
    assert torch.isfinite(out.tokens).all()
    # Different words get different features (hashed trigrams, not one shared unknown token).
    assert not torch.allclose(out.pooled[0], out.pooled[1])


def test_hashed_encoder_is_deterministic_across_instances():
    a, b = hashed(), hashed()
    assert torch.equal(a(["the red car"]).tokens, b(["the red car"]).tokens)
    assert a.token_count("the red car on the left") == 6


def _tiny_bert_folder(path):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "white", "boat", "red", "car", "a", "dog"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=12,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


def test_hf_folder_encoder_is_frozen_projected_and_cached(tmp_path, monkeypatch):
    folder = _tiny_bert_folder(tmp_path)
    enc = PretrainedTextEncoder(folder, dim=8, max_tokens=5)
    # The frozen encoder is not part of the weights: only the projection is saved and trained.
    assert set(enc.state_dict()) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    out = enc(["the white boat", "a dog"])
    assert out.tokens.shape == (2, 5, 8)
    # [CLS] the white boat [SEP] = 5 tokens; [CLS] a dog [SEP] = 4 then padding.
    assert out.padding.tolist() == [[False] * 5, [False] * 4 + [True]]
    out.pooled.sum().backward()
    assert enc.proj.weight.grad is not None
    calls = []
    frozen = enc._frozen[0]
    monkeypatch.setattr(enc, "_frozen", [lambda **kw: calls.append(kw) or frozen(**kw)])
    again = enc(["a dog", "the white boat"])
    assert calls == []  # both captions came from the cache
    assert torch.allclose(again.tokens[0], out.tokens[1])
    enc(["the red car"])
    assert len(calls) == 1
    assert enc.token_count("the white boat " * 10) == 32


def test_missing_hf_folder_is_a_config_error(tmp_path):
    cfg = GroundingConfig(text_encoder="hf", text_path=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        build_text_encoder(cfg)


@pytest.mark.slow
def test_packaged_minilm_loads_offline_and_ranks_paraphrases():
    enc = build_text_encoder(GroundingConfig(text_encoder="minilm", embed_dim=32, max_tokens=16))
    feats, padding = enc.frozen_features(["the white boat", "a white boat", "the red car"])
    pooled = masked_mean(feats, padding)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    assert float(pooled[0] @ pooled[1]) > float(pooled[0] @ pooled[2])
    assert enc(["北京的船"]).tokens.shape == (1, 16, 32)
