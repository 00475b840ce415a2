"""The ONNX Runtime backend: the network exported to ONNX, checked against eager once, cached, and run on the CPU
in one shard per core when a call has several rows (or through CUDA)."""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tracker.artifacts import batch_key_part, cache_key, example_inputs
from tracker.config import Config
from tracker.errors import BackendError
from tracker.threads import physical_cores

ONNX_OPSET = 18
ONNX_CHECK_TOLERANCE = 1e-3  # max |ORT - eager| allowed on the score/size/offset maps when a file is exported


class OnnxRunner:
    """The network exported to ONNX (opset ``ONNX_OPSET``) and run by ONNX Runtime, on the CPU or through CUDA.

    The exported file is cached by config and weights; a fresh export is checked against the eager outputs.

    On the CPU, several rows are split into one shard per core, each run on one thread at the same time: a batch
    of small matrices gains little from intra-op threads (4 rows: 24 ms on one thread, 20 ms on two), while
    shards on separate cores scale with them (12.9 ms). One row keeps every thread for itself."""

    def __init__(self, net: nn.Module, cfg: Config, device: torch.device, cache: Path, batch: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("backend onnx needs onnx and onnxruntime, which are not installed; "
                               "pip install onnx onnxruntime or use --backend eager") from None
        self.device = device
        threads = torch.get_num_threads() if device.type == "cpu" else physical_cores()
        self.shards = cpu_shards(batch, threads) if device.type == "cpu" else 1
        rows = batch // self.shards
        path = cache / "onnx" / f"{cache_key(net, cfg, torch.__version__, str(ONNX_OPSET), *batch_key_part(rows))}.onnx"
        fresh = not path.is_file()
        if fresh:
            export_onnx(net, cfg, path, rows)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("this onnxruntime has no CUDA provider; pip install onnxruntime-gpu or use "
                                   "--backend cudagraph")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads // self.shards
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers fight OpenCV's and the app's threads for the cores: on 2 cores the step's p90 went from
        # 6 ms to 36 ms with it (docs/benchmarks.md section 7).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.outputs = [o.name for o in self.session.get_outputs()]
        # The caller runs the first shard itself; ONNX Runtime's run may be called from several threads at once.
        self._pool = ThreadPoolExecutor(self.shards - 1, "onnx-shard") if self.shards > 1 else None
        if fresh:
            check_onnx_outputs(self, net, cfg, device, batch)

    def __call__(self, template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feeds = [
            {"template_tokens": tokens.numpy(), "search": crops.numpy()}
            for tokens, crops in zip(
                template_tokens.detach().cpu().chunk(self.shards), search.detach().cpu().chunk(self.shards),
                strict=True,
            )
        ]
        pending = [self._pool.submit(self.session.run, self.outputs, feed) for feed in feeds[1:]] if self._pool else []
        shards = [self.session.run(self.outputs, feeds[0]), *(job.result() for job in pending)]
        return tuple(
            torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0]).to(self.device)
            for parts in zip(*shards, strict=True)
        )


def cpu_shards(rows: int, threads: int) -> int:
    """How many single-threaded shards ``rows`` crops run in on ``threads`` CPU threads: the most that divide
    the rows evenly (a static batch is a power of two), never more than the threads."""
    return max(n for n in range(1, min(rows, max(threads, 1)) + 1) if rows % n == 0)


def export_onnx(net: nn.Module, cfg: Config, path: Path, batch: int = 1) -> Path:
    """Write ``net`` as ONNX for ``batch`` rows: inputs ``template_tokens``, ``search``; outputs score/size/offset
    maps and, per CE block, the removed token indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    template_tokens, search = example_inputs(cfg, torch.device("cpu"), batch=batch)
    cpu_net = copy.deepcopy(net).cpu()
    if cpu_net.focus_index is not None:
        cpu_net.focus_index = cpu_net.focus_index.cpu()
    removed_names = [f"removed_{i}" for i in range(len(cfg.ce_keep_counts()))]
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the static CE kept counts, which are static on purpose.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cpu_net,
            (template_tokens, search),
            str(tmp),
            input_names=["template_tokens", "search"],
            output_names=["score_map", "size_map", "offset_map", *removed_names],
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    tmp.replace(path)
    return path


def check_onnx_outputs(
    runner: OnnxRunner, net: nn.Module, cfg: Config, device: torch.device, batch: int = 1
) -> float:
    """Run ONNX Runtime and eager on the same inputs; refuse the file if the maps differ by more than the
    tolerance. Returns the largest difference."""
    template_tokens, search = example_inputs(cfg, device, seed=1, batch=batch)
    with torch.no_grad():
        ref = net(template_tokens, search)
    mine = runner(template_tokens, search)
    worst = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref[:3], mine[:3], strict=True))
    if not worst <= ONNX_CHECK_TOLERANCE:
        raise BackendError(f"the ONNX export differs from the eager model by {worst:.2g} (allowed "
                           f"{ONNX_CHECK_TOLERANCE}); use --backend eager and report this")
    return worst
