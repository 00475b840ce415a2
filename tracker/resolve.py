"""The one way from (config?, weights?) to what a model is built from: its config, its tensors, and where they came
from; and the strict load of those tensors into the built model.

``resolve_model`` runs the steps in this order, and each error names its step:

1. find the weights: neither argument means the bundled model; a bare name is looked up in ``weights/``;
2. check a file the manifest lists against its sha256 (``tracker.weights``);
3. read the tensors without running anything in the file (``tracker.checkpoint``);
4. take the config: the one given, else the one the file embeds, else the one its tensor shapes fit
   (``tracker.arch``, which also says what to write when no config fits);
5. apply dotted overrides.

``tracker.build`` then builds the module and calls ``load_state_into``, whose error on a mismatch names the config
that would fit. This module imports only downward (config, checkpoint, arch, weights); nothing it imports imports
it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tracker.arch import config_advice, infer_config
from tracker.checkpoint import MAX_LISTED, Checkpoint, read_checkpoint
from tracker.config import Config, load_config, with_overrides
from tracker.errors import CheckpointError
from tracker.weights import default_weights, resolve_weights, verify_against_manifest

OVERRIDES_SOURCE = "config overrides"  # how errors in build_tracker(overrides=...) name their origin
GIVEN, EMBEDDED, INFERRED = "given", "embedded", "inferred"  # where a resolved config came from


@dataclass(frozen=True)
class Provenance:
    """Where a resolved model came from.

    ``weights``: the file read (None: no weights, the model starts random). ``config_origin``: ``given`` (by the
    caller), ``embedded`` (in the weights file or a YAML beside it) or ``inferred`` (from the tensor shapes).
    ``layout``: where in the file the tensors were; ``experiment``: the experiment an official training checkpoint
    names, if any; ``metadata``: our safetensors files' metadata (training command, seed, data, ...).
    """

    weights: Path | None
    config_origin: str
    layout: str = ""
    experiment: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ResolvedModel:
    """A config, the tensors for its model (None: random weights) and their provenance; not yet a module."""

    config: Config
    state_dict: dict[str, torch.Tensor] | None
    provenance: Provenance

    @property
    def source(self) -> str:
        """How errors name these weights: the file's path."""
        return str(self.provenance.weights)


def resolve_model(
    config: str | Path | Config | None = None,
    weights: str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
    weights_dir: str | Path | None = None,
) -> ResolvedModel:
    """(config?, weights?) -> config, tensors and provenance (see the module docstring for the steps).

    ``config``: a name in ``configs/``, a YAML path or a ``Config``; ``weights``: a path or a file name in
    ``weights_dir`` (default ``weights/``); neither: the bundled model. ``overrides``: dotted keys with YAML values,
    applied last (``{"TEST.SEARCH_FACTOR": "3.5"}``). Errors are one-line ``TrackerError``s.
    """
    if weights is None and config is None:
        weights = default_weights(weights_dir)
    if weights is None:
        cfg = with_overrides(load_config(config), overrides, source=OVERRIDES_SOURCE)
        return ResolvedModel(cfg, None, Provenance(None, GIVEN))
    ckpt = open_weights(weights, weights_dir)
    cfg, origin = config_for(ckpt, config)
    cfg = with_overrides(cfg, overrides, source=OVERRIDES_SOURCE)
    provenance = Provenance(Path(ckpt.path), origin, ckpt.layout, ckpt.config_hint, ckpt.metadata)
    return ResolvedModel(cfg, ckpt.state_dict, provenance)


def open_weights(weights: str | Path, weights_dir: str | Path | None = None) -> Checkpoint:
    """A weights file found by path or by name in ``weights_dir``, checked against the manifest if it lists the
    file, and read without running anything in it."""
    path = resolve_weights(weights, weights_dir)
    verify_against_manifest(path, weights_dir)
    return read_checkpoint(path)


def config_for(ckpt: Checkpoint, config: str | Path | Config | None = None) -> tuple[Config, str]:
    """The config to build ``ckpt``'s model with, and where it came from (``GIVEN``, ``EMBEDDED``, ``INFERRED``).

    Inference reads the tensor shapes and, among configs that fit equally, follows the experiment the file names;
    when nothing in ``configs/`` fits, the error lists the keys a YAML needs."""
    if config is not None:
        return load_config(config), GIVEN
    if ckpt.config is not None:
        return ckpt.config, EMBEDDED
    return infer_config(ckpt.state_dict, source=ckpt.path, hint=ckpt.config_hint), INFERRED


def load_state_into(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, cfg: Config
) -> torch.nn.Module:
    """Load ``state`` strictly (tensors are assigned, so ``model`` may be on the meta device); on any mismatch raise
    one ``CheckpointError`` listing them and naming a config that would fit. Returns ``model``."""
    problems = mismatches(model.state_dict(), state)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise CheckpointError(
            f"{source} does not fit config '{cfg.name or 'given'}' ({len(problems)} mismatches: {listed}{more}); "
            f"{config_advice(state)}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    for name, buffer in model.named_buffers():
        if buffer.is_meta:
            raise CheckpointError(f"{source}: buffer {name} was not filled by the file; report this as a bug")
    return model


def mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """How ``state`` differs from a model's ``expected`` state dict: ``missing K``, ``unexpected K`` and
    ``shape K (file shape) (model (model shape))`` phrases, in that order."""
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"shape {k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return problems
