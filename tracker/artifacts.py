"""What backends keep on disk (exported ONNX files, TensorRT engines): where, under which key, and the example
inputs of the network's static shapes that exports and checks run on."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from tracker.config import Config

# The network's calling convention, part of every cached artefact's key: a file exported by an older version of
# this module (e.g. one that took the template's pixels, not its tokens) must not be picked up after an upgrade.
NETWORK_INTERFACE = "template_tokens+search"


def example_inputs(
    cfg: Config, device: torch.device, seed: int = 0, batch: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the network's static shapes: template tokens (N, Lz, C) and search crops (N, 3, S, S)."""
    gen = torch.Generator().manual_seed(seed)
    tokens, size = cfg.template_tokens_side**2, cfg.test.search_size
    template_tokens = torch.randn(batch, tokens, cfg.backbone.embed_dim, generator=gen)
    return template_tokens.to(device), torch.randn(batch, 3, size, size, generator=gen).to(device)


def default_cache_dir() -> Path:
    root = os.environ.get("OSTRACK_LIVE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(root) / "ostrack-live"


def cache_key(net: nn.Module, cfg: Config, *parts: str) -> str:
    """A file name stem that changes with the config, the weights and whatever else the artefact depends on."""
    digest = hashlib.sha256(cfg.to_yaml().encode())
    digest.update(NETWORK_INTERFACE.encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for part in parts:
        digest.update(part.encode())
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(cfg.name).stem) if cfg.name else "model"  # names may be paths
    return f"{stem}-{digest.hexdigest()[:16]}"


def batch_key_part(batch: int) -> tuple[str, ...]:
    # One row keeps the key it always had, so files exported before batches existed stay valid.
    return () if batch == 1 else (f"batch{batch}",)
