"""Fast paths that must not change a single byte or bit: the torch crop, colour conversion on the crop, the static
CE focus index; and the backend switchboard: choices, clear errors, precision policy, ONNX export, caches."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CONFORMANCE, TINY_WEIGHTS, TINY_YAML
from tracker import Box, TrackerError, build_model, build_tracker
from tracker.accel import (
    BackendError,
    Float32Island,
    TrackingNet,
    build_network,
    focus_index,
    keep_sensitive_layers_fp32,
    resolve_backend,
)
from tracker.config import load_config
from tracker.preprocess import crop_around, crop_around_torch, resize_like_opencv
from tracker.threads import configure_cpu_threads, physical_cores

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing here runs on it
needs_conformance = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="shared/conformance is not beside the repo")


def _md5(array: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny():
    model = build_model(TINY_YAML).eval()
    model.load_state_dict(torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"], strict=True)
    return model


@pytest.fixture(scope="module")
def forward_ref():
    return torch.load(CONFORMANCE / "tiny256ce_forward.pt", map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------------------------
# Crops: torch path and colour-on-crop give the official bytes


@pytest.mark.parametrize("size", [1, 2, 3, 7, 63, 64, 100, 127, 128, 129, 255, 256, 257, 394, 512, 513, 768, 1000])
@pytest.mark.parametrize("out", [128, 256, 384])
def test_torch_resize_matches_opencv_byte_for_byte(size, out):
    image = np.random.default_rng(size * 1000 + out).integers(0, 256, (size, size, 3), dtype=np.uint8)
    assert np.array_equal(resize_like_opencv(torch.from_numpy(image), out).numpy(), cv2.resize(image, (out, out)))


@pytest.mark.parametrize(
    "box",
    [Box(100, 80, 20, 20), Box(-10, -10, 20, 20), Box(300, 220, 30, 25), Box(1000, 1000, 10, 10),
     Box(0.5, 0.5, 320, 240), Box(159.5, 119.5, 3.3, 7.7), Box(-200, -100, 900, 700)],
)
def test_torch_crop_matches_cpu_crop(box):
    frame = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for factor, size in ((2.0, 128), (4.0, 256), (5.0, 384)):
        ref = crop_around(frame, box, factor, size)
        mine, resize_factor = crop_around_torch(frame, box, factor, size, CPU)
        assert np.array_equal(mine.numpy(), ref.image)
        assert resize_factor == ref.resize_factor
        also_tensor, _ = crop_around_torch(torch.from_numpy(frame), box, factor, size, CPU)
        assert torch.equal(also_tensor, mine)


def test_crop_without_mask_has_the_same_pixels():
    frame = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with_mask = crop_around(frame, Box(-5, 10, 40, 30), 4.0, 256)
    without = crop_around(frame, Box(-5, 10, 40, 30), 4.0, 256, with_mask=False)
    assert without.pad_mask is None and with_mask.pad_mask.any()
    assert np.array_equal(with_mask.image, without.image) and with_mask.resize_factor == without.resize_factor


@needs_conformance
def test_colour_on_the_crop_and_torch_crop_reproduce_the_official_crop_md5s():
    """Cropping the BGR frame and converting only the crop (CPU), and the torch crop, give the official bytes."""
    runs = json.loads((CONFORMANCE / "tiny256ce_steps.json").read_text())["runs"]
    checked = 0
    for run in runs:
        folder = CONFORMANCE / "sequence" / run["sequence"]
        first = cv2.imread(str(folder / run["init_frame"]))
        template = crop_around(first, Box.from_xywh(run["init_box"]), 2.0, 128, with_mask=False)
        assert _md5(cv2.cvtColor(template.image, cv2.COLOR_BGR2RGB)) == run["template_crop_md5"]
        for step in run["steps"][::3]:
            frame = cv2.imread(str(folder / step["frame"]))
            prev = Box.from_xywh(step["prev_state"])
            cpu = crop_around(frame, prev, 4.0, 256, with_mask=False)
            assert _md5(cv2.cvtColor(cpu.image, cv2.COLOR_BGR2RGB)) == step["search_crop_md5"], step["frame"]
            gpu_path, factor = crop_around_torch(frame, prev, 4.0, 256, CPU)
            assert _md5(gpu_path.flip(-1).numpy()) == step["search_crop_md5"], step["frame"]
            assert factor == step["resize_factor"]
            checked += 1
    assert checked == sum(len(run["steps"][::3]) for run in runs)


# ---------------------------------------------------------------------------------------------------------------
# The network wrapper is bit-identical to the reference call


@needs_conformance
def test_static_focus_index_gives_the_same_bits_as_the_bool_mask(tiny, forward_ref):
    cfg = tiny.cfg
    index = focus_index(cfg, CPU)
    assert index.tolist() == [27]
    with torch.no_grad():
        ref = tiny(forward_ref["template"], forward_ref["search"], ce_template_mask=forward_ref["ce_template_mask"])
        template_tokens = tiny.embed_template(forward_ref["template"])
        score, size, offset, *removed = TrackingNet(tiny, index)(template_tokens, forward_ref["search"])
    assert torch.equal(score, ref["score_map"]) and torch.equal(size, ref["size_map"])
    assert torch.equal(offset, ref["offset_map"])
    assert all(torch.equal(a, b) for a, b in zip(removed, ref["removed_indexes_s"], strict=True))
    counts = [256, *cfg.ce_keep_counts()]
    assert [r.shape[1] for r in removed] == [a - b for a, b in itertools.pairwise(counts)]


def test_default_backend_on_the_cpu_is_onnx_float32_and_eager_stays_the_exact_reference():
    tracker = build_tracker(TINY_YAML, device="cpu")
    network = tracker.network
    assert (network.name, network.precision, network.agreement) == ("onnx", "fp32", "near-exact")
    assert not tracker.gpu_crop
    reference = build_tracker(TINY_YAML, device="cpu", backend="eager")
    assert (reference.network.name, reference.network.precision, reference.network.exact) == ("eager", "fp32", True)


# ---------------------------------------------------------------------------------------------------------------
# Backend choices and their one-line errors


def test_auto_resolves_per_device(monkeypatch):
    assert resolve_backend("auto", "auto", CPU) == ("onnx", "fp32")  # onnx and onnxruntime are dependencies
    assert resolve_backend("auto", "bf16", CPU) == ("eager", "bf16")  # ONNX Runtime runs float32 only
    monkeypatch.setattr("tracker.accel.onnx_runtime_available", lambda: False)
    assert resolve_backend("auto", "auto", CPU) == ("eager", "fp32")
    monkeypatch.undo()
    assert resolve_backend("auto", "auto", CUDA) == ("cudagraph", "fp16")
    assert resolve_backend("tensorrt", "auto", CUDA) == ("tensorrt", "fp16")
    assert resolve_backend("compile", "bf16", CPU) == ("compile", "bf16")
    assert resolve_backend("int8", "auto", CPU) == ("int8", "fp32")


@pytest.mark.parametrize(
    ("backend", "precision", "device", "words"),
    [
        ("cudagraph", "auto", CPU, "needs a CUDA GPU"),
        ("tensorrt", "auto", CPU, "needs a CUDA GPU"),
        ("int8", "auto", CUDA, "CPU only"),
        ("onnx", "fp16", CPU, "fp32 only"),
        ("eager", "fp16", CPU, "bf16"),
        ("turbo", "auto", CPU, "unknown backend 'turbo'"),
        ("eager", "fp8", CPU, "unknown precision 'fp8'"),
    ],
)
def test_impossible_choices_fail_with_one_line(backend, precision, device, words):
    with pytest.raises(BackendError) as err:
        resolve_backend(backend, precision, device)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, TrackerError)


def test_build_tracker_refuses_a_gpu_backend_on_the_cpu():
    with pytest.raises(TrackerError, match="cudagraph needs a CUDA GPU"):
        build_tracker(TINY_YAML, device="cpu", backend="cudagraph")


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch-tensorrt is installed")
def test_tensorrt_without_the_package_says_how_to_get_it(tiny, tmp_path):
    from tracker.accel import _tensorrt

    with pytest.raises(BackendError, match=r"pip install 'ostrack-live\[gpu\]'") as err:
        _tensorrt(TrackingNet(tiny, None), tiny.cfg, CUDA, "fp16", tmp_path)
    assert "\n" not in str(err.value)


def test_threads_follow_physical_cores_or_the_override(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OSTRACK_LIVE_THREADS", raising=False)
    try:
        assert configure_cpu_threads() == physical_cores() == torch.get_num_threads()
        monkeypatch.setenv("OSTRACK_LIVE_THREADS", "1")
        assert configure_cpu_threads() == 1 == torch.get_num_threads()
        assert configure_cpu_threads(2) == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------------
# Mixed precision policy (bf16 on the CPU stands in for fp16 on a GPU: same autocast logic)


@needs_conformance
def test_mixed_precision_keeps_layernorm_softmax_and_head_in_float32(forward_ref):
    model = build_model(TINY_YAML).eval()
    model.load_state_dict(torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"], strict=True)
    keep_sensitive_layers_fp32(model)
    keep_sensitive_layers_fp32(model)  # a second tracker on the same model: nothing is wrapped twice
    assert isinstance(model.box_head, Float32Island) and not isinstance(model.box_head.inner, Float32Island)
    assert not isinstance(model.backbone.norm.inner, Float32Island)
    assert all(isinstance(b.norm1, Float32Island) and isinstance(b.norm2, Float32Island) for b in model.backbone.blocks)
    seen: dict[str, torch.dtype] = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)  # returns None: the output is left alone

        return hook

    model.backbone.blocks[0].norm1.register_forward_hook(record("norm"))
    model.backbone.blocks[0].attn.qkv.register_forward_hook(record("qkv"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn = model.backbone.blocks[3].attn
        _, probs = attn(torch.randn(1, 320, 64), need_probs=True)
        out = model(forward_ref["template"], forward_ref["search"], ce_template_mask=focus_index(model.cfg, CPU))
    assert probs.dtype == torch.float32  # CE ranks tokens by these
    assert seen == {"norm": torch.float32, "qkv": torch.bfloat16}
    assert out["score_map"].dtype == torch.float32
    # bf16 matmuls move the maps, not wildly: the score map stays a probability map close to float32's.
    assert (out["score_map"] - forward_ref["score_map"]).abs().max() < 0.05


def test_bf16_network_runs_end_to_end_on_the_cpu():
    tracker = build_tracker(TINY_YAML, TINY_WEIGHTS, device="cpu", precision="bf16")
    frame = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tracker.init(frame, Box(100, 80, 40, 30))
    result = tracker.update(frame)
    assert tracker.network.precision == "bf16" and not tracker.network.exact
    assert result.box.is_finite() and 0.0 <= result.score <= 1.0
    assert tracker.last_output.score_map.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------------
# ONNX export, its ONNX Runtime check and the cache


@needs_conformance
def test_onnx_export_is_checked_cached_and_close_to_eager(tiny, forward_ref, tmp_path):
    import onnx

    from tracker.onnx_runner import ONNX_OPSET, OnnxRunner, check_onnx_outputs

    net = TrackingNet(tiny, focus_index(tiny.cfg, CPU))
    runner = OnnxRunner(net, tiny.cfg, CPU, tmp_path)  # exports, then checks ORT against eager
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    model = onnx.load(str(files[0]))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= ONNX_OPSET >= 17
    assert [i.name for i in model.graph.input] == ["template_tokens", "search"]
    options = runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # waits sleep, not spin
    stamp = files[0].stat().st_mtime_ns
    OnnxRunner(net, tiny.cfg, CPU, tmp_path)  # second build: loaded from the cache, not exported again
    assert files[0].stat().st_mtime_ns == stamp
    with torch.no_grad():
        template_tokens = tiny.embed_template(forward_ref["template"])
    score, size, _offset, *removed = runner(template_tokens, forward_ref["search"])
    assert (score - forward_ref["score_map"]).abs().max() <= 1e-3
    assert (size - forward_ref["size_map"]).abs().max() <= 1e-3
    assert [r.shape[1] for r in removed] == [r.shape[1] for r in forward_ref["removed_indexes_s_int"]]
    assert check_onnx_outputs(runner, net, tiny.cfg, CPU) <= 1e-3


def test_onnx_check_refuses_a_file_that_does_not_match(tiny, tmp_path):
    from tracker.onnx_runner import OnnxRunner, check_onnx_outputs

    net = TrackingNet(tiny, focus_index(tiny.cfg, CPU))
    runner = OnnxRunner(net, tiny.cfg, CPU, tmp_path)
    other = build_model(TINY_YAML).eval()  # different random weights: the outputs must disagree
    with pytest.raises(BackendError, match="differs from the eager model"):
        check_onnx_outputs(runner, TrackingNet(other, focus_index(tiny.cfg, CPU)), tiny.cfg, CPU)


def test_network_choice_is_reported():
    cfg = load_config(TINY_YAML)
    net = build_network(build_model(cfg).eval(), cfg, CPU, "eager", "fp32", fused_attention=True)
    assert (net.name, net.exact, net.agreement) == ("eager", False, "near-exact")
    assert "near-exact" in repr(net)
    int8 = build_network(build_model(cfg).eval(), cfg, CPU, "int8")
    assert (int8.name, int8.agreement) == ("int8", "low-precision")


def test_auto_on_cpu_runs_onnx_and_falls_back_to_eager_when_it_cannot(tmp_path, monkeypatch):
    cfg = load_config(TINY_YAML)
    net = build_network(build_model(cfg).eval(), cfg, CPU, cache_dir=tmp_path)
    assert (net.name, net.agreement, net.note) == ("onnx", "near-exact", None)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1

    def broken_export(*_args):
        raise RuntimeError("exporter exploded\nsecond line")

    monkeypatch.setattr("tracker.onnx_runner.export_onnx", broken_export)
    fallback = build_network(build_model(cfg).eval(), cfg, CPU, cache_dir=tmp_path / "fresh")
    assert (fallback.name, fallback.exact) == ("eager", True)
    assert fallback.note == "backend auto: ONNX Runtime unavailable (exporter exploded), running eager"
    with pytest.raises(RuntimeError, match="exploded"):  # asked for by name, the failure is the user's to see
        build_network(build_model(cfg).eval(), cfg, CPU, "onnx", cache_dir=tmp_path / "named")


def test_onnx_without_onnxruntime_says_how_to_get_it(tiny, tmp_path, monkeypatch):
    import sys

    from tracker.onnx_runner import OnnxRunner

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like to ``import``
    with pytest.raises(BackendError, match=r"pip install onnx onnxruntime") as err:
        OnnxRunner(TrackingNet(tiny, None), tiny.cfg, CPU, tmp_path)
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())  # nothing exported


def test_cpu_shards_split_rows_evenly_and_never_exceed_the_threads():
    from tracker.onnx_runner import cpu_shards

    assert [cpu_shards(rows, 2) for rows in (1, 2, 4, 8)] == [1, 2, 2, 2]
    assert [cpu_shards(rows, 4) for rows in (1, 2, 4, 8)] == [1, 2, 4, 4]
    assert cpu_shards(6, 4) == 3 and cpu_shards(4, 1) == 1 and cpu_shards(4, 0) == 1


def test_onnx_rows_run_in_shards_on_two_threads_give_the_unsharded_rows(tiny, tmp_path):
    """Four rows as two single-threaded shards run at once: each row as the one-session run gives it."""
    from tracker.artifacts import example_inputs
    from tracker.onnx_runner import OnnxRunner

    net = TrackingNet(tiny, focus_index(tiny.cfg, CPU))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = OnnxRunner(net, tiny.cfg, CPU, tmp_path, batch=4)
        torch.set_num_threads(2)
        sharded = OnnxRunner(net, tiny.cfg, CPU, tmp_path, batch=4)  # exports a two-row file and checks it
    finally:
        torch.set_num_threads(before)
    assert (whole.shards, sharded.shards) == (1, 2)
    assert sharded.session.get_session_options().intra_op_num_threads == 1
    template_tokens, search = example_inputs(tiny.cfg, CPU, seed=3, batch=4)
    template_tokens[2:] = template_tokens[0]  # rows differ in both inputs, and two share a template
    for mine, ref in zip(sharded(template_tokens, search), whole(template_tokens, search), strict=True):
        assert mine.shape == ref.shape and mine.shape[0] == 4
        assert (mine.float() - ref.float()).abs().max() <= 1e-5


def test_network_exports_as_one_static_graph(tiny):
    """What the TensorRT (dynamo) path needs: one exported graph, no symbolic sizes, the same bits as eager."""
    from tracker.artifacts import example_inputs

    net = TrackingNet(tiny, focus_index(tiny.cfg, CPU))
    exported = torch.export.export(net, example_inputs(tiny.cfg, CPU), strict=False)
    assert not exported.range_constraints  # every size is a constant: CE keeps a fixed count per block
    inputs = example_inputs(tiny.cfg, CPU, seed=1)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(exported.module()(*inputs), net(*inputs), strict=True))


def test_a_second_tracker_can_share_the_network():
    from tracker.single import SingleTracker

    first = build_tracker(TINY_YAML, device="cpu", precision="bf16")
    second = SingleTracker(first.model, first.cfg, first.device, network=first.network)
    frame = np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    first.init(frame, Box(40, 30, 30, 20))
    second.init(frame, Box(40, 30, 30, 20))
    assert second.network is first.network
    assert first.update(frame).box == second.update(frame).box


def test_an_export_from_another_network_interface_is_not_reused(tiny, tmp_path, monkeypatch):
    """After an upgrade that changes what the network takes, the old cached file must not be run."""
    from tracker.onnx_runner import OnnxRunner

    net = TrackingNet(tiny, focus_index(tiny.cfg, CPU))
    OnnxRunner(net, tiny.cfg, CPU, tmp_path)
    monkeypatch.setattr("tracker.artifacts.NETWORK_INTERFACE", "template+search")
    OnnxRunner(net, tiny.cfg, CPU, tmp_path)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
