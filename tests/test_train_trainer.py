"""The trainer: bit-identical reruns, exact resume, best-checkpoint keeping, exported weights, CLI and DDP."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests import train_fixtures as fx
from tests.helpers import ROOT
from tracker import build_tracker
from tracker.config import load_config
from tracker.errors import CheckpointError, InputError
from tracker.train import TrainOptions, train
from tracker.train.__main__ import main as cli_main


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_run_data")
    fx.make_ours_sequences(root / "seqs", names=("seq_a", "seq_b", "seq_c"))
    fx.make_ours_images(root / "imgs")
    return (("OURS_SEQ", str(root / "seqs")), ("OURS_IMG", str(root / "imgs"))), root / "cache"


def _options(data_roots, out, **overrides):
    data, cache = data_roots
    base = dict(
        config=load_config(fx.TRAIN_YAML),
        data=data,
        out_dir=out,
        seed=7,
        workers=0,
        threads=1,
        cache_dir=cache,
        progress=False,
        command="pytest",
    )
    return TrainOptions(**{**base, **overrides})


def _weights(path):
    return load_file(str(path))


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_gives_bit_identical_weights_with_or_without_workers(data_roots, tmp_path):
    first = train(_options(data_roots, tmp_path / "a", max_steps=3))
    second = train(_options(data_roots, tmp_path / "b", max_steps=3, workers=1))
    assert first.step == second.step == 3
    assert _same_weights(first.final_weights, second.final_weights)
    other_seed = train(_options(data_roots, tmp_path / "c", max_steps=3, seed=8))
    assert not _same_weights(first.final_weights, other_seed.final_weights)


def _with_teacher(path, weight=1.0):
    cfg = load_config(fx.TRAIN_YAML)
    return replace(cfg, train=replace(cfg.train, distill_weight=weight, distill_teacher=str(path)))


def test_distillation_from_nanotrack_v3_adds_its_term_and_stays_reproducible(data_roots, tmp_path):
    teacher = ROOT.parent / "shared" / "peers" / "nanotrack_v3" / "nanotrack_v3.safetensors"
    if not teacher.is_file():
        pytest.skip("the NanoTrack v3 weights are not beside the repo")
    plain = train(_options(data_roots, tmp_path / "plain", max_steps=2))
    taught = train(_options(data_roots, tmp_path / "a", max_steps=2, config=_with_teacher(teacher)))
    again = train(_options(data_roots, tmp_path / "b", max_steps=2, config=_with_teacher(teacher)))
    assert _same_weights(taught.final_weights, again.final_weights)
    assert not _same_weights(plain.final_weights, taught.final_weights)
    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "loss" in entry]
    assert steps and all(entry["distill"] > 0 for entry in steps)
    plain_log = (tmp_path / "plain" / "log.jsonl").read_text().splitlines()
    assert not any("distill" in json.loads(line) for line in plain_log)
    with pytest.raises(InputError, match="DISTILL_TEACHER"):
        train(_options(data_roots, tmp_path / "c", max_steps=1, config=_with_teacher(tmp_path / "none.safetensors")))


def test_stop_and_resume_matches_an_uninterrupted_run(data_roots, tmp_path):
    held = ("seq_c",)
    whole = train(_options(data_roots, tmp_path / "whole", val_sequences=held))
    assert whole.step == whole.total_steps == 8
    part = train(_options(data_roots, tmp_path / "part", val_sequences=held, max_steps=3))
    assert part.step == 3
    with pytest.raises(Exception, match="already holds a run"):
        train(_options(data_roots, tmp_path / "part", val_sequences=held))
    resumed = train(_options(data_roots, tmp_path / "part", val_sequences=held, resume="auto"))
    assert resumed.step == 8
    assert _same_weights(whole.final_weights, resumed.final_weights)
    assert resumed.best_metric == whole.best_metric
    assert _same_weights(whole.best_weights, resumed.best_weights)


def test_a_run_resumes_across_schema_additions_but_not_across_a_changed_setting(data_roots, tmp_path):
    part = train(_options(data_roots, tmp_path / "run", max_steps=2))
    assert part.step == 2
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    payload = torch.load(last, map_location="cpu", weights_only=False)
    # As a checkpoint written before the distillation keys existed: their lines absent, their defaults implied.
    older = "\n".join(line for line in payload["config"].splitlines() if "DISTILL" not in line)
    assert older != payload["config"]
    torch.save({**payload, "config": older}, last)
    assert train(_options(data_roots, tmp_path / "run", max_steps=3, resume="auto")).step == 3
    changed = torch.load(last, map_location="cpu", weights_only=False)
    torch.save({**changed, "config": changed["config"].replace("GIOU_WEIGHT: 2.0", "GIOU_WEIGHT: 3.0")}, last)
    with pytest.raises(CheckpointError, match="another config"):
        train(_options(data_roots, tmp_path / "run", max_steps=4, resume="auto"))


def test_best_checkpoint_follows_the_validation_hook(data_roots, tmp_path):
    scores = iter([0.2, 0.5, 0.3])
    seen = []

    def validator(cfg, model):
        seen.append(model.training)
        return next(scores)

    from tracker.train import trainer as trainer_module

    options = _options(data_roots, tmp_path / "run", val_every=2, max_steps=6)
    run = trainer_module.Trainer(options)
    run.validator = validator
    result = run.run()
    assert result.best_metric == 0.5 and seen == [True, True, True]
    with safe_open(str(result.best_weights), framework="pt") as handle:
        meta = handle.metadata()
    assert float(meta["val_metric"]) == 0.5 and meta["val_step"] == "4"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["metric"] for e in log if e.get("event") == "validation"] == [0.2, 0.5, 0.3]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5, 6]


def test_exported_weights_carry_provenance_and_build_a_tracker(data_roots, tmp_path):
    result = train(_options(data_roots, tmp_path / "run", max_steps=2))
    with safe_open(str(result.final_weights), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["training_command"] == "pytest" and meta["seed"] == "7" and meta["steps"] == "2"
    assert "OURS_SEQ" in json.loads(meta["data"]) and float(meta["wall_time_s"]) > 0
    tracker = build_tracker(weights=result.final_weights, device="cpu")
    assert tracker.cfg.search_tokens_side == 4
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == 2 and "optimizer" in state and "rng" in state


def test_cli_reports_a_missing_dataset_path_in_one_line(tmp_path, capsys):
    code = cli_main(["--config", str(fx.TRAIN_YAML), "--data", "OURS_SEQ=x", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: no path for dataset OURS_IMG") and "\n" not in err
    code = cli_main(["--config", str(fx.TRAIN_YAML), "--data", "OURS_SEQ", "--out", str(tmp_path / "o")])
    assert code == 2 and "NAME=PATH" in capsys.readouterr().err


def test_cli_trains_and_writes_the_run_folder(data_roots, tmp_path, capsys):
    data, cache = data_roots
    args = ["--config", str(fx.TRAIN_YAML), "--out", str(tmp_path / "cli"), "--max-steps", "2", "--workers", "0"]
    args += [f"--data={name}={path}" for name, path in data] + ["--cache-dir", str(cache), "--no-progress"]
    assert cli_main([*args, "--set", "DATA.SEARCH.SCALE_JITTER=0.5"]) == 0
    assert "done: step 2/8" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "cli").iterdir()} >= {"config.yaml", "log.jsonl", "final.safetensors"}
    trained = build_tracker(weights=tmp_path / "cli" / "final.safetensors", device="cpu").cfg
    assert trained.data.search.scale_jitter == 0.5  # the changed key travels with the weights


def test_cli_names_a_bad_config_change_in_one_line(tmp_path, capsys):
    args = ["--config", str(fx.TRAIN_YAML), "--data", "OURS_SEQ=x", "--out", str(tmp_path / "o")]
    assert cli_main([*args, "--set", "DATA.SEARCH.JITTER=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set: unknown key DATA.SEARCH.JITTER") and "\n" not in err
    assert cli_main([*args, "--set", "DATA.SEARCH.SCALE_JITTER"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_two_cpu_processes_under_torchrun(data_roots, tmp_path):
    data, cache = data_roots
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "tracker.train",
        "--config",
        str(fx.TRAIN_YAML),
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--workers",
        "0",
        "--threads",
        "1",
        "--cache-dir",
        str(cache),
        "--no-progress",
        "--val-seq",
        "seq_c",
        "--val-every",
        "3",
    ]
    command += [f"--data={name}={path}" for name, path in data]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("done: step 3/4") == 1  # 8 samples / (2 x 2) = 2 steps an epoch; one report
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["processes"] == 2
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["world"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert build_tracker(weights=out / "final.safetensors", device="cpu").cfg.backbone.depth == 2
    assert (out / "best.safetensors").is_file()


def test_pretrained_vit_checkpoint_fills_the_backbone(tmp_path):
    from tracker import build_model
    from tracker.models.vit import interpolate_pos_embed
    from tracker.train.pretrained import load_pretrained_backbone

    cfg = load_config(fx.TRAIN_YAML)
    torch.manual_seed(1)
    donor = build_model(cfg).backbone.state_dict()
    mae_like = {k: v for k, v in donor.items() if k not in ("pos_embed_z", "pos_embed_x")}
    mae_like["decoder_embed.weight"] = torch.zeros(4, 4)  # MAE's decoder: not ours, ignored
    path = tmp_path / "mae.pth"
    torch.save({"model": mae_like}, path)
    torch.manual_seed(2)
    model = build_model(cfg)
    report = load_pretrained_backbone(model, str(path))
    assert torch.equal(model.backbone.blocks[1].mlp.fc1.weight, donor["blocks.1.mlp.fc1.weight"])
    assert torch.allclose(model.backbone.pos_embed_x, interpolate_pos_embed(donor["pos_embed"], 4))
    assert report.endswith("0 backbone tensors not in it")


def test_init_starts_from_whole_model_weights(data_roots, tmp_path):
    from safetensors.torch import save_file

    from tracker import build_model

    cfg = load_config(fx.TRAIN_YAML)
    torch.manual_seed(123)  # a model no seed of the runs below would draw
    model = build_model(cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "donor.safetensors"))
    donor = {k: v.detach() for k, v in model.named_parameters()}  # BatchNorm statistics move with any step
    donor_file = str(tmp_path / "donor.safetensors")
    tuned = _weights(train(_options(data_roots, tmp_path / "tuned", max_steps=1, init=donor_file)).final_weights)
    scratch = _weights(train(_options(data_roots, tmp_path / "scratch", max_steps=1)).final_weights)

    def farthest(weights):
        return max(float((weights[k] - donor[k]).abs().max()) for k in donor if k in weights)

    assert farthest(tuned) < 0.01 < farthest(scratch)  # one small step away from the donor, every parameter
    with pytest.raises(InputError, match="not both"):
        train(_options(data_roots, tmp_path / "both", max_steps=1, init="a.safetensors", pretrained="b.pth"))


def test_sequence_validator_scores_with_the_evaluation_metric(data_roots):
    from tracker.train.datasets import load_source
    from tracker.train.validate import SequenceValidator, sequence_auc
    from tracker.types import Box, TrackResult

    data, cache = data_roots
    seq = load_source("OURS_SEQ", dict(data)["OURS_SEQ"], cache).sequences[0]

    class Oracle:  # answers with the ground truth (or far from it): the score must follow
        def __init__(self, offset):
            self.offset, self.index = offset, 0

        def init(self, frame, box):
            assert frame.shape == (fx.FRAME_H, fx.FRAME_W, 3) and box == Box.from_xywh(seq.boxes[0])
            self.index = 0

        def update(self, frame):
            self.index += 1
            x, y, w, h = seq.boxes[self.index]
            return TrackResult(Box(x + self.offset, y, w, h), 1.0, 0.0)

    assert sequence_auc(Oracle(0.0), seq) == pytest.approx(1.0, abs=0.05)
    assert sequence_auc(Oracle(60.0), seq) == 0.0
    cfg = load_config(fx.TRAIN_YAML)
    from tracker import build_model

    model = build_model(cfg).train()
    score = SequenceValidator([seq], max_frames=8)(cfg, model)
    assert 0.0 <= score <= 1.0 and model.training
