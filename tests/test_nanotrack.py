"""The PyTorch NanoTrack v3 backbone and head against the released ONNX graphs, on real frames, and the loaders'
errors."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tracker.errors import CheckpointError
from tracker.models.nanotrack import (
    CHECKPOINT_PREFIX,
    HEAD_PREFIX,
    NanoTrackV3Backbone,
    NanoTrackV3Head,
    fill_head,
    load_nanotrack_v3_backbone,
)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
PEERS = SHARED / "peers" / "nanotrack_v3"
SEQUENCES = SHARED / "data" / "sequences"
SEQUENCE_NAMES = ("Basketball", "UAV123_10fps_boat1", "DTB70_MountainBike6")
TOLERANCE = 1e-4  # the outputs peak near 10, so this is float32 agreement


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the repo's sibling shared/ folder holds the peer models and clips)")
    return path


@pytest.fixture(scope="module")
def backbone() -> NanoTrackV3Backbone:
    return load_nanotrack_v3_backbone(_need(PEERS / "nanotrack_v3.safetensors"))


@pytest.fixture(scope="module")
def onnx_backbone():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = onnx.load(str(_need(PEERS / "nanotrack_backbone.onnx")))
    # The file declares 255x255; symbolic spatial dims let the same graph take the 127x127 exemplar.
    for value, name in ((graph.graph.input[0], "side"), (graph.graph.output[0], "feat")):
        for dim in value.type.tensor_type.shape.dim[2:]:
            dim.ClearField("dim_value")
            dim.dim_param = name
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def head() -> NanoTrackV3Head:
    path = _need(PEERS / "nanotrack_v3.safetensors")
    return fill_head(NanoTrackV3Head(), load_file(str(path)), str(path)).eval()


@pytest.fixture(scope="module")
def onnx_head():
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    path = _need(PEERS / "nanotrack_head.onnx")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _first_frame_crop(sequence: str, size: int) -> np.ndarray:
    """(1,3,size,size) float32 BGR crop of frame 0 around its ground-truth box, with the tracker's context margin
    (the search crop covers twice the exemplar's area side)."""
    folder = _need(SEQUENCES / sequence)
    capture = cv2.VideoCapture(str(folder / "video.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot decode {folder / 'video.mp4'}"
    first_line = (folder / "groundtruth.txt").read_text().splitlines()[0]
    x, y, w, h = (float(v) for v in re.split(r"[,\s]+", first_line.strip()))
    margin = (w + h) / 2
    side = np.sqrt((w + margin) * (h + margin)) * (2 if size > 127 else 1)
    patch = cv2.getRectSubPix(frame, (round(side), round(side)), (x + w / 2, y + h / 2))
    patch = cv2.resize(patch, (size, size))
    return np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32)


@pytest.mark.parametrize("size", [127, 255])
@pytest.mark.parametrize("sequence", SEQUENCE_NAMES)
def test_matches_onnx_on_real_crops(backbone, onnx_backbone, sequence: str, size: int) -> None:
    crop = _first_frame_crop(sequence, size)
    with torch.no_grad():
        ours = backbone(torch.from_numpy(crop)).numpy()
    theirs = onnx_backbone.run(None, {"input": crop})[0]
    side = -(-size // NanoTrackV3Backbone.stride)
    assert ours.shape == theirs.shape == (1, NanoTrackV3Backbone.out_channels, side, side)
    assert np.abs(theirs).max() > 1.0  # a dead map would agree trivially
    assert np.abs(ours - theirs).max() < TOLERANCE


@pytest.mark.parametrize("sequence", SEQUENCE_NAMES)
def test_head_matches_onnx_on_real_crops(backbone, onnx_backbone, head, onnx_head, sequence: str) -> None:
    """PyTorch backbone -> head against ONNX backbone -> ONNX head, each chain fed only its own features."""
    exemplar, search = _first_frame_crop(sequence, 127), _first_frame_crop(sequence, 255)
    with torch.no_grad():
        ours = head(backbone(torch.from_numpy(exemplar)), backbone(torch.from_numpy(search)))
    features = {name: onnx_backbone.run(None, {"input": crop})[0] for name, crop in (("z", exemplar), ("x", search))}
    theirs = onnx_head.run(None, {"input1": features["z"], "input2": features["x"]})
    for mine, ref, shape in zip(ours, theirs, [(1, 2, 15, 15), (1, 4, 15, 15)], strict=True):
        assert mine.shape == ref.shape == shape
        assert np.abs(ref).max() > 1.0  # a dead map would agree trivially
        # Logits peak near 8: absolute TOLERANCE. Distances are exp() of the regression and reach about 80 px,
        # where one float32 ulp is ~8e-6, so they get TOLERANCE relative to max(1, |value|) (measured: <= 5e-6).
        scale = np.maximum(1.0, np.abs(ref)) if shape[1] == 4 else 1.0
        assert (np.abs(mine.numpy() - ref) / scale).max() < TOLERANCE


def test_head_batches_like_single_pairs(backbone, head) -> None:
    """The depth-wise correlation folds the batch into groups: a batch must give each pair's own maps."""
    crops = [(_first_frame_crop(name, 127), _first_frame_crop(name, 255)) for name in SEQUENCE_NAMES[:2]]
    with torch.no_grad():
        z = backbone(torch.from_numpy(np.concatenate([c[0] for c in crops])))
        x = backbone(torch.from_numpy(np.concatenate([c[1] for c in crops])))
        batched = head(z, x)
        single = [head(z[i : i + 1], x[i : i + 1]) for i in range(len(crops))]
    for out, part in zip(batched, zip(*single, strict=True), strict=True):
        torch.testing.assert_close(out, torch.cat(part), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("size", "side"), [(96, 6), (127, 8), (128, 8), (192, 12), (255, 16), (256, 16)])
def test_output_side_is_ceil_of_input_over_16(size: int, side: int) -> None:
    with torch.no_grad():
        out = NanoTrackV3Backbone().eval()(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 96, side, side)


def _save_backbone(path: Path, state: dict[str, torch.Tensor]) -> Path:
    save_file({CHECKPOINT_PREFIX + k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_loader_accepts_a_complete_state(tmp_path: Path) -> None:
    state = NanoTrackV3Backbone().state_dict()
    model = load_nanotrack_v3_backbone(_save_backbone(tmp_path / "ok.safetensors", state))
    assert not model.training
    torch.testing.assert_close(model.state_dict(), state)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("missing", "features.9.conv.8.running_var"),
        ("misshapen", "features.9.conv.8.running_var"),
        ("unexpected", "features.10.0.weight"),
    ],
)
def test_loader_rejects_a_state_that_does_not_fit(tmp_path: Path, damage: str, named: str) -> None:
    state = NanoTrackV3Backbone().state_dict()
    if damage == "missing":
        del state[named]
    elif damage == "misshapen":
        state[named] = torch.ones(95)
    else:
        state[named] = torch.ones(1)
    with pytest.raises(CheckpointError, match=f"{damage} {re.escape(named)}") as err:
        load_nanotrack_v3_backbone(_save_backbone(tmp_path / "bad.safetensors", state))
    assert "\n" not in str(err.value)


def test_loader_rejects_a_file_without_backbone_tensors(tmp_path: Path) -> None:
    save_file({"ban_head.cls.weight": torch.ones(1)}, str(tmp_path / "head_only.safetensors"))
    with pytest.raises(CheckpointError, match="no backbone"):
        load_nanotrack_v3_backbone(tmp_path / "head_only.safetensors")


def test_loader_rejects_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_nanotrack_v3_backbone(tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_nanotrack_v3_backbone(tmp_path / "junk.safetensors")


def test_head_loader_rejects_a_misshapen_tensor() -> None:
    state = {HEAD_PREFIX + k: v for k, v in NanoTrackV3Head().state_dict().items()}
    state[HEAD_PREFIX + "corr_pw_cls.conv.0.weight"] = torch.ones(96, 1, 2, 2)
    with pytest.raises(CheckpointError, match=r"NanoTrack v3 head: misshapen corr_pw_cls\.conv\.0\.weight") as err:
        fill_head(NanoTrackV3Head(), state, "bad.safetensors")
    assert "\n" not in str(err.value)


def test_head_loader_rejects_a_file_without_head_tensors() -> None:
    state = {CHECKPOINT_PREFIX + k: v for k, v in NanoTrackV3Backbone().state_dict().items()}
    with pytest.raises(CheckpointError, match=r"no ban_head\.\* tensors"):
        fill_head(NanoTrackV3Head(), state, "backbone_only.safetensors")
