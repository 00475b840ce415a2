"""Inference backends: the same network run eagerly, compiled, graph-captured, through TensorRT or ONNX Runtime,
or with int8 Linear layers, behind one call ``network(template_tokens, search) -> NetOutput``. The template's
tokens come from ``network.embed_template(template)``, run eagerly once per target: the backends run only the
part of a step that changes every frame.

Three classes of agreement with the reference, each held to its own tolerance in tests/test_accel_equality.py:

- ``exact``: eager float32 with the explicit softmax, the reference arithmetic itself (boxes within 0.05 px of the
  official vectors, identical candidate-elimination (CE) removed-token sets on every step).
- ``near-exact``: other float32 paths (compile, ONNX Runtime, fused attention, CUDA graphs, TensorRT fp32). Their
  kernels round differently by ~1e-7, which is enough to swap CE near-ties (score gaps ~1e-6) on a few steps in a
  hundred; where the sets agree, boxes agree within 0.05 px.
- ``low-precision``: fp16/bf16 autocast and int8. Most CE boundaries move a little; the kept tokens mostly agree.

``auto`` picks the fastest backend that keeps the tracks: ``cudagraph`` (fp16) on a CUDA GPU; on the CPU ``onnx``
(ONNX Runtime, float32, near-exact; 1.4x to 2.1x eager on the bundled model with the same AUC, docs/benchmarks.md)
when onnx and onnxruntime import, else ``eager``. If the automatic ONNX path cannot be built (export or check
fails), the network falls back to eager and says why in ``Network.note``. int8 and bf16 are faster still on
large models but move the tracks, so they are never chosen automatically. ``eager`` float32 is the reference.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tracker.artifacts import batch_key_part, cache_key, default_cache_dir, example_inputs
from tracker.config import Config
from tracker.errors import BackendError, TrackerError, first_line
from tracker.models.candidate import template_focus_mask
from tracker.models.ostrack import OSTrack
from tracker.models.vit import Attention
from tracker.onnx_runner import OnnxRunner

BACKENDS = ("auto", "eager", "compile", "cudagraph", "tensorrt", "onnx", "int8")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True, eq=False)
class NetOutput:
    """One network step. Maps are (N, C, fs, fs) float32 on the tracker's device, one row per search crop: score
    (C=1), size and offset (C=2, channel 0 = x/w); ``removed`` holds, per CE block, the original indices of the
    search tokens it dropped (N, k)."""

    score_map: torch.Tensor
    size_map: torch.Tensor
    offset_map: torch.Tensor
    removed: tuple[torch.Tensor, ...]

    def rows(self, start: int, stop: int) -> NetOutput:
        """The outputs of crops ``start`` to ``stop - 1`` of a batched step."""
        return NetOutput(
            self.score_map[start:stop],
            self.size_map[start:stop],
            self.offset_map[start:stop],
            tuple(r[start:stop] for r in self.removed),
        )


class TrackingNet(nn.Module):
    """The tracker's view of OSTrack: ``(template_tokens, search) -> (score, size, offset, *removed)``.

    A flat tuple of tensors with static shapes is what export, compilation and graph capture need. The template
    focus rows are baked in as an index tensor; picking the same rows by index gives the same bits as the bool mask.
    """

    def __init__(self, model: OSTrack, focus_index: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.focus_index = focus_index

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_embedded(template_tokens, search, ce_template_mask=self.focus_index)
        return (out["score_map"], out["size_map"], out["offset_map"], *out["removed_indexes_s"])


class Network:
    """Runs one backend. ``name`` and ``precision`` say what runs; ``agreement`` how close to the reference it is
    (``exact``, ``near-exact`` or ``low-precision``, see the module docstring). ``embed`` turns a template crop
    into the tokens ``__call__`` takes; without it the template passes through as it is (a stand-in network).

    ``batch``: the number of rows (search crops) a static backend (ONNX, CUDA graphs, TensorRT) runs, or None when
    any number runs. Fewer rows are padded up to it. ``with_batch(n)`` gives the network for ``n`` rows, built
    once by ``rebuild`` and kept."""

    def __init__(
        self,
        name: str,
        precision: str,
        run: Callable[..., tuple[torch.Tensor, ...]],
        agreement: str,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch: int | None = None,
        rebuild: Callable[[int], Network] | None = None,
    ) -> None:
        self.name = name
        self.precision = precision
        self.agreement = agreement
        self.note: str | None = None  # why this is not the backend that was asked for, if it is not
        self.batch = batch
        self._run = run
        self._embed = embed
        self._rebuild = rebuild
        self._batched: dict[int, Network] = {} if batch is None else {batch: self}

    @property
    def exact(self) -> bool:
        return self.agreement == "exact"

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """The template crop's tokens, for every later ``__call__`` on this target (eager, float32)."""
        if self._embed is None:
            return template
        with torch.no_grad():
            return self._embed(template)

    def with_batch(self, rows: int) -> Network:
        """The network that runs ``rows`` search crops in one call: this one when its batch is free or equal,
        else one built for that static batch (once; later calls reuse it)."""
        if self.batch is None or self._rebuild is None:
            return self
        if rows not in self._batched:
            self._batched[rows] = self._rebuild(rows)
        return self._batched[rows]

    def __call__(self, template_tokens: torch.Tensor, search: torch.Tensor) -> NetOutput:
        """One step for ``N`` search crops (N, 3, S, S) against their targets' tokens (N or 1 rows)."""
        rows = search.shape[0]
        template_tokens = template_tokens.expand(rows, *template_tokens.shape[1:])
        if self.batch is not None and rows < self.batch:  # a static shape: pad with copies of the first row
            template_tokens, search = (_pad_rows(x, self.batch) for x in (template_tokens, search))
        elif self.batch is not None and rows > self.batch:
            raise TrackerError(f"this network runs at most {self.batch} crops at once, got {rows}")
        with torch.no_grad():
            score, size, offset, *removed = self._run(template_tokens.contiguous(), search.contiguous())
        return NetOutput(score.float(), size.float(), offset.float(), tuple(removed)).rows(0, rows)

    def __repr__(self) -> str:
        return f"Network({self.name}, {self.precision}, {self.agreement})"


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x[:1].expand(rows - x.shape[0], *x.shape[1:])])


def focus_index(cfg: Config, device: torch.device) -> torch.Tensor | None:
    """The template rows that rank search tokens (CE), as int64 indices; None when the config has no CE or uses
    all rows."""
    if not cfg.backbone.ce_loc:
        return None
    mask = template_focus_mask(cfg.template_tokens_side, cfg.backbone.ce_template_range)
    return None if mask is None else mask.nonzero().flatten().to(device)


def resolve_backend(backend: str, precision: str, device: torch.device) -> tuple[str, str]:
    """Turn ``auto`` choices into a concrete (backend, precision) for this device; refuse impossible pairs."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if backend == "auto":
        onnx_fits = precision in ("auto", "fp32") and onnx_runtime_available()
        backend = "cudagraph" if cuda else ("onnx" if onnx_fits else "eager")
    if backend in ("cudagraph", "tensorrt") and not cuda:
        raise BackendError(f"backend {backend} needs a CUDA GPU and this run is on {device.type}; "
                           "use --backend eager, compile, onnx or int8 on the CPU")
    if backend == "int8" and cuda:
        raise BackendError("backend int8 (dynamic quantisation) runs on the CPU only; use --device cpu or "
                           "--backend cudagraph on the GPU")
    if precision == "auto":
        precision = "fp16" if backend in ("cudagraph", "tensorrt") else "fp32"
    if backend in ("int8", "onnx") and precision != "fp32":
        raise BackendError(f"backend {backend} runs in fp32 only; drop --precision {precision}")
    if precision == "fp16" and not cuda:
        raise BackendError("fp16 is for CUDA GPUs; on the CPU use --precision bf16 or fp32")
    return backend, precision


def onnx_runtime_available() -> bool:
    """Whether the ``onnx`` backend can run: both the exporter's and the runtime's packages import."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def build_network(
    model: OSTrack,
    cfg: Config,
    device: torch.device,
    backend: str = "auto",
    precision: str = "auto",
    fused_attention: bool = False,
    cache_dir: str | Path | None = None,
    batch: int = 1,
) -> Network:
    """A ``Network`` running ``model`` (already on ``device``, eval mode) with the asked-for backend.

    The network may change ``model`` in place (precision policy, fused attention, quantisation): it owns it.
    ``fused_attention`` uses the fused SDPA kernel in the blocks that do not rank tokens (near-exact).
    ``cache_dir`` holds exported ONNX files and TensorRT engines (default ``~/.cache/ostrack-live``).
    ``batch``: the search crops per call of a static backend (more targets, or re-detection tiles, in one
    forward); ``Network.with_batch`` builds the others when they are needed.
    """
    automatic = backend == "auto"
    backend, precision = resolve_backend(backend, precision, device)
    if automatic and backend == "onnx":
        try:
            return _network(model, cfg, device, "onnx", precision, fused_attention, cache_dir, batch)
        except Exception as exc:
            network = _network(model, cfg, device, "eager", precision, fused_attention, cache_dir, batch)
            network.note = f"backend auto: ONNX Runtime unavailable ({first_line(exc)}), running eager"
            return network
    return _network(model, cfg, device, backend, precision, fused_attention, cache_dir, batch)


STATIC_BATCH_BACKENDS = frozenset({"onnx", "cudagraph", "tensorrt"})  # their inputs have one shape, rows included


def _network(
    model: OSTrack,
    cfg: Config,
    device: torch.device,
    backend: str,
    precision: str,
    fused_attention: bool,
    cache_dir: str | Path | None,
    batch: int = 1,
) -> Network:
    set_fused_attention(model, fused_attention)
    if precision != "fp32" and backend in ("eager", "compile", "cudagraph"):  # TensorRT sets its own precision
        keep_sensitive_layers_fp32(model)
    net = TrackingNet(model, focus_index(cfg, device)).eval()
    if precision != "fp32" or backend == "int8":
        agreement = "low-precision"
    else:
        agreement = "exact" if backend == "eager" and not fused_attention else "near-exact"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    builders = {
        "eager": lambda: _autocast(net, device, precision),
        "compile": lambda: _autocast(_compiled(net), device, precision),
        "cudagraph": lambda: CudaGraphRunner(_autocast(net, device, precision), cfg, device, batch=batch),
        "tensorrt": lambda: _tensorrt(net, cfg, device, precision, cache, batch),
        "onnx": lambda: OnnxRunner(net, cfg, device, cache, batch),
        "int8": lambda: _int8(net),
    }
    static = backend in STATIC_BATCH_BACKENDS
    return Network(
        backend,
        precision,
        builders[backend](),
        agreement,
        embed=model.embed_template,
        batch=batch if static else None,
        rebuild=lambda rows: _network(model, cfg, device, backend, precision, fused_attention, cache_dir, rows),
    )


# ----------------------------------------------------------------------------------------------------------------
# Precision policy, fused attention


def set_fused_attention(model: nn.Module, fused: bool) -> None:
    """Use (or not) the fused SDPA kernel in attention that need not hand back probabilities."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.fused = fused


class Float32Island(nn.Module):
    """Runs ``inner`` with autocast off on float32 inputs: for LayerNorm (its variance loses too much in half) and
    the head (its clamped sigmoid peak decides the box; in bf16 neighbouring scores tie)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with torch.autocast(x.device.type, enabled=False):
            return self.inner(x.float())


def keep_sensitive_layers_fp32(model: OSTrack) -> None:
    """The mixed-precision policy: matmuls in half, LayerNorm, softmax (vit.Attention) and the head in float32.
    Applying it twice changes nothing more (a model shared by several trackers)."""
    if isinstance(model.box_head, Float32Island):
        return
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, Float32Island(child))
    model.box_head = Float32Island(model.box_head)


def _autocast(run: Callable, device: torch.device, precision: str) -> Callable:
    if precision == "fp32":
        return run
    dtype = _HALF[precision]

    def run_mixed(template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # No weight-cast cache: it lives for one ``with`` block anyway, and a captured CUDA graph must not point
        # into a cache that is freed when the block ends.
        with torch.autocast(device.type, dtype=dtype, cache_enabled=False):
            return run(template_tokens, search)

    return run_mixed


# ----------------------------------------------------------------------------------------------------------------
# Backends


def _compiled(net: TrackingNet) -> Callable:
    """torch.compile with static shapes: every step has the same input sizes and CE keeps fixed token counts."""
    return torch.compile(net, dynamic=False, fullgraph=True)


def _int8(net: TrackingNet) -> Callable:
    """Linear layers with int8 weights and dynamically quantised activations (CPU kernels)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8, inplace=True)


class CudaGraphRunner:
    """The whole network captured once as a CUDA graph and replayed per frame from static input buffers."""

    def __init__(self, run: Callable, cfg: Config, device: torch.device, warmup: int = 3, batch: int = 1) -> None:
        self.template_tokens, self.search = (torch.zeros_like(x) for x in example_inputs(cfg, device, batch=batch))
        side_stream = torch.cuda.Stream(device)
        side_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side_stream):  # warm-up: lazy inits must not land in the graph
            for _ in range(warmup):
                run(self.template_tokens, self.search)
        torch.cuda.current_stream(device).wait_stream(side_stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.outputs = run(self.template_tokens, self.search)

    def __call__(self, template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.template_tokens.copy_(template_tokens)
        self.search.copy_(search)
        self.graph.replay()
        return tuple(out.clone() for out in self.outputs)  # the next replay overwrites the static outputs


def _tensorrt(
    net: TrackingNet, cfg: Config, device: torch.device, precision: str, cache: Path, batch: int = 1
) -> Callable:
    """torch-tensorrt (dynamo path): an engine built once per config, weights, precision and GPU, kept on disk."""
    try:
        import torch_tensorrt
    except ImportError:
        raise BackendError("backend tensorrt needs torch-tensorrt, which is not installed; "
                           "pip install 'ostrack-live[gpu]' or use --backend cudagraph") from None
    inputs = list(example_inputs(cfg, device, batch=batch))
    gpu = torch.cuda.get_device_name(device).replace(" ", "_")
    key = cache_key(net, cfg, gpu, precision, torch_tensorrt.__version__, *batch_key_part(batch))
    path = cache / "tensorrt" / f"{key}-{gpu}.ep"
    if path.is_file():
        return torch.export.load(str(path)).module()
    dtypes = {torch.float16} if precision == "fp16" else {torch.float32}
    engine = torch_tensorrt.compile(net, ir="dynamo", inputs=inputs, enabled_precisions=dtypes)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_tensorrt.save(engine, str(path), inputs=inputs)
    return engine
