"""The runner, the OpenCV baselines and the CLI on tiny synthetic sequences."""

import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.eval_fixtures import make_otb, make_ours, scene
from tests.helpers import TINY_YAML
from tracker.errors import ConfigError, InputError
from tracker.eval import baselines
from tracker.eval.baselines import build_baseline
from tracker.eval.cli import main
from tracker.eval.datasets import load_dataset
from tracker.eval.runner import evaluate, folder_name, run_sequence
from tracker.eval.sequence import Sequence
from tracker.eval.trackers import TrackerSpec, baseline_specs, parse_tracker_spec, unique_names
from tracker.types import Box, TrackResult

NANO_PRESENT = (baselines.PEERS_DIR / baselines.NANO_BACKBONE).is_file()
NANO3_PRESENT = (baselines.PEERS_DIR / baselines.NANO3_DIR / baselines.NANO3_FILES[0]).is_file()


class Scripted:
    """Answers each update with the next box of a script (NaN rows stand for a failed step)."""

    def __init__(self, boxes):
        self.boxes = [Box.from_xywh(b) for b in boxes]
        self.inits = []

    def init(self, frame_bgr, box):
        self.inits.append(box)
        self.step = 0

    def update(self, frame_bgr):
        box = self.boxes[self.step]
        self.step += 1
        return TrackResult(box, 0.5, 1.0)


def _sequence(tmp_path, count=6):
    root = make_otb(tmp_path / "otb", count=count)
    return load_dataset(root, names=["Square"])[0]


def test_run_sequence_starts_from_gt_and_keeps_the_last_box_on_failure(tmp_path):
    sequence = _sequence(tmp_path, count=5)
    gt = sequence.groundtruth
    script = [gt[1], [np.nan] * 4, gt[3], gt[4]]
    tracker = Scripted(script)
    run = run_sequence(tracker, sequence)
    assert tracker.inits == [Box.from_xywh(gt[0])]
    np.testing.assert_array_equal(run.boxes, [gt[0], gt[1], gt[1], gt[3], gt[4]])
    assert run.step_ms.shape == run.frame_ms.shape == (4,)
    assert (run.frame_ms >= run.step_ms).all() and (run.step_ms > 0).all()
    # frames 1, 3, 4 exact (IoU 1); frame 2 kept frame 1's box: IoU of two 20 px squares offset by (2, 1)
    overlap = (18 * 19) / (2 * 400 - 18 * 19)
    expected = (3 * 20 / 21 + np.sum(overlap > np.linspace(0, 1, 21)) / 21) / 4
    assert run.score.auc == pytest.approx(expected)


def test_run_sequence_respects_max_frames(tmp_path):
    sequence = _sequence(tmp_path, count=5)
    run = run_sequence(Scripted(sequence.groundtruth[1:]), sequence, max_frames=3)
    assert run.boxes.shape == (3, 4) and run.score.frames == 2


def test_init_shift_moves_the_first_box_but_scores_against_the_ground_truth(tmp_path):
    sequence = _sequence(tmp_path, count=4)
    gt = sequence.groundtruth
    tracker = Scripted(gt[1:])
    run = run_sequence(tracker, sequence, init_shift=(1.0, -2.0))
    shifted = Box(gt[0][0] + 1.0, gt[0][1] - 2.0, gt[0][2], gt[0][3])
    assert tracker.inits == [shifted]
    np.testing.assert_array_equal(run.boxes[0], shifted.as_list())
    assert run.score.auc == pytest.approx(20 / 21)  # the tracked frames are exact; the init frame is not scored


def test_cli_records_the_init_shift_and_rejects_a_malformed_one(tmp_path, capsys):
    root = make_otb(tmp_path / "otb", count=3)
    args = ["--dataset", str(root), "--sequences", "Square", "--baselines", "mil", "--no-progress", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "out"), "--init-shift", "1,0"]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["settings"]["init_shift"] == "1,0"
    first = np.loadtxt(tmp_path / "out" / "results" / "OpenCV_MIL" / "Square.txt", delimiter=",")[0]
    np.testing.assert_array_equal(first, [21, 20, 20, 20])
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "bad"), "--init-shift", "1"])
    assert "DX,DY" in capsys.readouterr().err


def test_first_frame_without_a_box_cannot_be_tracked(tmp_path):
    sequence = _sequence(tmp_path)
    gt = sequence.groundtruth.copy()
    gt[0] = np.nan
    broken = Sequence("broken", gt, frame_paths=sequence.frame_paths)
    with pytest.raises(InputError, match="first frame"):
        run_sequence(Scripted(gt[1:]), broken)


def test_mil_follows_the_square_and_repeats_exactly(tmp_path):
    sequence = _sequence(tmp_path, count=8)
    spec = TrackerSpec("mil", lambda: build_baseline("mil"))
    first = evaluate([spec], [sequence], show_progress=False).trackers[0].runs[0]
    again = evaluate([spec], [sequence], show_progress=False).trackers[0].runs[0]
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert first.score.auc > 0.5
    assert first.step_fps > 0 and first.frame_fps > 0


@pytest.mark.skipif(not NANO_PRESENT, reason="NanoTrack ONNX files not in ../shared/peers")
def test_nano_follows_the_square(tmp_path):
    sequence = _sequence(tmp_path, count=8)
    run = run_sequence(build_baseline("nano"), sequence)
    assert run.score.auc > 0.5


@pytest.mark.skipif(not NANO3_PRESENT, reason="NanoTrack v3 files not in ../shared/peers")
def test_nanotrack_v3_follows_the_square(tmp_path):
    sequence = _sequence(tmp_path, count=8)
    run = run_sequence(build_baseline("nano3"), sequence)
    assert run.score.auc > 0.5


def test_opencv_wrapper_rounds_the_init_box_and_rejects_bad_ones():
    assert baselines._whole_pixels(Box(20.4, 19.6, 20.2, 0.3)) == (20, 20, 20, 1)
    frames, _ = scene(2)
    tracker = build_baseline("mil")
    with pytest.raises(InputError):
        tracker.update(frames[1])
    with pytest.raises(InputError):
        tracker.init(frames[0], Box(0, 0, 0, 10))
    tracker.init(frames[0], Box(20.4, 19.6, 20.2, 19.8))
    result = tracker.update(frames[1])
    assert result.box.is_finite() and result.elapsed_ms > 0


class _FailsAfterOne:
    """OpenCV's tracker interface: the first update succeeds one pixel to the right, every later one fails."""

    def init(self, frame, rect):
        self.rect, self.calls = rect, 0

    def update(self, frame):
        self.calls += 1
        x, y, w, h = self.rect
        return self.calls == 1, (x + 1, y, w, h)


def test_a_failed_opencv_step_keeps_the_box_or_reports_lost_and_the_runner_scores_the_last_box(tmp_path):
    sequence = _sequence(tmp_path, count=4)
    frames = list(sequence.frames())
    for report_lost in (False, True):
        tracker = baselines.OpenCVTracker(_FailsAfterOne, report_lost=report_lost)
        tracker.init(frames[0], Box(20, 20, 20, 20))
        assert tracker.update(frames[1]).box == Box(21, 20, 20, 20)
        failed = tracker.update(frames[2])
        assert failed.score == 0.0 and failed.lost == report_lost
        assert failed.box.is_finite() != report_lost
        run = run_sequence(tracker, sequence)
        np.testing.assert_array_equal(run.boxes[2:], [run.boxes[1]] * 2)


def test_missing_contrib_baselines_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.delattr(cv2, "TrackerCSRT_create", raising=False)
    specs, skipped = baseline_specs(["mil", "csrt"])
    assert [s.name for s in specs] == ["OpenCV MIL"]
    assert [s.name for s in skipped] == ["OpenCV CSRT"] and "contrib" in skipped[0].reason
    with pytest.raises(InputError, match="unknown baseline"):
        baseline_specs(["sift"])
    with pytest.raises(InputError, match="contrib"):
        build_baseline("csrt")


@pytest.mark.parametrize("name", ["nano", "nano3"])
def test_nano_without_its_models_is_a_clear_error(tmp_path, name):
    with pytest.raises(InputError, match="--peers"):
        build_baseline(name, peers_dir=tmp_path)


def test_tracker_specs():
    spec = parse_tracker_spec(f"config={TINY_YAML},name=tiny,device=cpu")
    assert spec.name == "tiny"
    assert parse_tracker_spec(f"config={TINY_YAML}").name == "tiny256ce"
    with pytest.raises(InputError, match="not one of"):
        parse_tracker_spec("model=x")
    with pytest.raises(InputError, match="not found"):
        parse_tracker_spec("weights=/no/such/file.pth")
    with pytest.raises(InputError, match="names no model"):
        parse_tracker_spec("name=x")
    onnx = parse_tracker_spec(f"config={TINY_YAML},backend=onnx,precision=fp32")
    assert onnx.name == "tiny256ce-onnx-fp32"
    renamed = unique_names([spec, spec, spec])
    assert [s.name for s in renamed] == ["tiny", "tiny-2", "tiny-3"]
    assert folder_name("OpenCV MIL") == "OpenCV_MIL"


def test_weights_by_file_name_come_from_the_weights_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not found from here, so the weights folder must answer
    previous = parse_tracker_spec("weights=bundled_small.safetensors")
    assert previous.name == "bundled_small"
    assert previous.make().tracker.network is not None
    with pytest.raises(InputError, match=r"weights file nothing\.safetensors not found.*--tracker"):
        parse_tracker_spec("weights=nothing.safetensors")


def test_bundled_spec_takes_options_but_not_another_model(monkeypatch, tmp_path):
    weights = tmp_path / "bundled.safetensors"
    weights.write_bytes(b"")
    monkeypatch.setattr("tracker.eval.trackers.default_weights", lambda: weights)
    assert parse_tracker_spec("bundled,backend=onnx").name == "bundled-onnx"
    assert parse_tracker_spec("bundled,name=ours").name == "ours"
    with pytest.raises(InputError, match="already names the model"):
        parse_tracker_spec(f"bundled,config={TINY_YAML}")


def test_backend_spec_builds_that_backend():
    target = parse_tracker_spec(f"config={TINY_YAML},device=cpu,backend=eager,precision=bf16").make()
    assert (target.tracker.network.name, target.tracker.network.precision) == ("eager", "bf16")


def test_cli_writes_results_tables_json_and_plots(tmp_path, capsys):
    root = make_otb(tmp_path / "otb", count=4)
    out = tmp_path / "out"
    code = main([
        "--dataset", str(root), "--sequences", "Square,Twin-1",
        "--tracker", f"config={TINY_YAML},name=tiny", "--device", "cpu",
        "--baselines", "mil", "--max-frames", "3", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and "OpenCV MIL" in printed and "Twin-1" in printed
    boxes = np.loadtxt(out / "results" / "OpenCV_MIL" / "Square.txt", delimiter=",")
    assert boxes.shape == (3, 4)
    np.testing.assert_array_equal(boxes[0], [20, 20, 20, 20])  # the first line is the init box
    assert np.loadtxt(out / "results" / "tiny" / "Twin-1_time.txt").shape == (3,)
    assert np.loadtxt(out / "results" / "tiny" / "Twin-1_frame_time.txt").shape == (3,)
    report = json.loads((out / "results.json").read_text())
    assert [t["name"] for t in report["trackers"]] == ["tiny", "OpenCV MIL"]
    mil = report["trackers"][1]
    assert [s["sequence"] for s in mil["sequences"]] == ["Square", "Twin-1"]
    assert mil["mean"]["auc"] == pytest.approx(np.mean([s["auc"] for s in mil["sequences"]]))
    assert len(mil["mean"]["success_curve"]) == 21 and mil["sequences"][0]["frames"] == 2
    markdown = (out / "results.md").read_text()
    assert "| OpenCV MIL |" in markdown and f"{mil['mean']['auc']:.3f}" in markdown
    for name in ("success.png", "precision.png", "norm_precision.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100


def test_cli_on_our_layout_skips_nan_frames(tmp_path, capsys):
    root = make_ours(tmp_path / "sequences", count=6)
    out = tmp_path / "out"
    args = ["--dataset", str(root), "--baselines", "mil", "--out", str(out), "--no-progress", "--no-plots"]
    assert main(args) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["layout"] == "ours"
    assert report["trackers"][0]["sequences"][0]["frames"] == 4  # 6 frames - init - the NaN frame
    assert not (out / "success.png").exists()


def test_cli_errors_are_one_line_and_exit_nonzero(tmp_path, capsys):
    assert main(["--dataset", str(tmp_path / "missing"), "--baselines", "mil", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    root = make_otb(tmp_path / "otb")
    assert main(["--dataset", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to run" in capsys.readouterr().err
    out = str(tmp_path / "o")
    assert main(["--dataset", str(root), "--baselines", "mil", "--max-frames", "1", "--out", out]) == 2
    assert "--max-frames" in capsys.readouterr().err


def test_fps_is_nan_free_for_real_runs(tmp_path):
    sequence = _sequence(tmp_path, count=3)
    run = run_sequence(Scripted(sequence.groundtruth[1:]), sequence)
    assert math.isfinite(run.step_fps) and math.isfinite(run.frame_fps)


def test_spec_config_overrides_reach_the_built_tracker():
    spec = parse_tracker_spec(
        f"config={TINY_YAML},device=cpu,backend=eager,TEST.SEARCH_FACTOR=3.5,TEST.CE_KEEP_RATIO=[0.9, 0.9, 0.9],"
        "name=wide"
    )
    tracker = spec.make().tracker  # the model's tracker inside the lost-and-found Target the evaluator runs
    assert spec.name == "wide"
    assert tracker.cfg.test.search_factor == 3.5
    assert tracker.cfg.tracking_keep_ratios == (0.9, 0.9, 0.9)


def test_spec_config_overrides_name_a_bad_key_or_value_in_one_line():
    with pytest.raises(ConfigError, match=r"unknown key TEST\.SERCH_FACTOR"):
        parse_tracker_spec(f"config={TINY_YAML},TEST.SERCH_FACTOR=3").make()
    with pytest.raises(ConfigError, match=r"TRACK\.SIZE_UPDATE must be above 0"):
        parse_tracker_spec(f"config={TINY_YAML},TRACK.SIZE_UPDATE=0").make()
    with pytest.raises(ConfigError, match=r"TRACK\.CLIP_MARGIN must be 1 pixel or more"):
        parse_tracker_spec(f"config={TINY_YAML},TRACK.CLIP_MARGIN=0").make()
    with pytest.raises(ConfigError, match=r"TRACK\.SCALE_PENALTY must be 0 \(off\) or more"):
        parse_tracker_spec(f"config={TINY_YAML},TRACK.SCALE_PENALTY=-1").make()
    with pytest.raises(ConfigError, match=r"MODEL\.TEMPLATE_CONTEXT_GAIN must be from 0 to 1"):
        parse_tracker_spec(f"config={TINY_YAML},MODEL.TEMPLATE_CONTEXT_GAIN=2").make()
    with pytest.raises(InputError, match="config key"):
        parse_tracker_spec(f"config={TINY_YAML},test.search_factor=3")


def _benchmark_script(name: str):
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_shift_benchmark_runs_each_shift_and_averages(tmp_path, capsys):
    script = _benchmark_script("init_shifts")
    root = make_otb(tmp_path / "otb", count=3)
    args = ["--dataset", str(root), "--sequences", "Square", "--baselines", "mil", "--no-progress", "--no-plots"]
    out = tmp_path / "shifts"
    assert script.main([*args, "--out", str(out), "--shifts", "0,0", "3,-2"]) == 0
    table = json.loads((out / "shifts.json").read_text())["by_tracker"]["OpenCV MIL"]
    assert list(table) == ["0,0", "3,-2"]
    moved = json.loads((out / "shift_3_-2" / "results.json").read_text())
    assert moved["settings"]["init_shift"] == "3,-2"
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0  # the zero shift is the plain evaluation
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert table["0,0"]["auc"] == pytest.approx(plain["trackers"][0]["mean"]["auc"])
    mean = (table["0,0"]["auc"] + table["3,-2"]["auc"]) / 2
    assert f"| {mean:.3f} |" in (out / "shifts.md").read_text()
    by_sequence = json.loads((out / "shifts.json").read_text())["by_sequence"]
    assert by_sequence == {"OpenCV MIL": {"Square": pytest.approx(mean)}}  # one sequence: its mean is the mean
    assert f"| Square | {mean:.3f} |" in (out / "shifts.md").read_text()
    with pytest.raises(SystemExit):
        script.main([*args, "--out", str(out), "--init-shift", "1,0"])
    assert "--shifts" in capsys.readouterr().err


class _StandStill:
    """A tracker that never moves or resizes its box: its one-step ratios are exactly its starting error."""

    def init(self, frame, box: Box) -> None:
        self.state = box

    def update(self, frame) -> TrackResult:
        return TrackResult(self.state, 1.0, 0.0)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_size_bias_starts_each_step_from_the_scaled_true_box(tmp_path, scale):
    script = _benchmark_script("size_bias")
    root = make_otb(tmp_path / "otb", count=6)
    square = next(s for s in load_dataset(root, "otb", None) if s.name == "Square")
    width, height, steps = script.sequence_bias(_StandStill(), square, frames=6, start_scale=scale)
    assert steps == 5 and width == pytest.approx(math.log(scale)) and height == pytest.approx(math.log(scale))
