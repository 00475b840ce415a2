"""The weights folder (manifest, sha256 checks, finding files by name) and ``python -m tracker.weights``."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import torch

from tests.helpers import CONFORMANCE, ROOT, TINY_WEIGHTS, TINY_YAML
from tracker import CheckpointError, load_config, load_model
from tracker import build as build_module
from tracker import weights as weights_module
from tracker.arch import parameter_count
from tracker.checkpoint import read_checkpoint, save_safetensors
from tracker.weights import default_weights, file_sha256, resolve_weights
from tracker.weights.cli import main

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="shared/conformance is not beside the repo")

FULL = CONFORMANCE / "tiny256ce_ep0300_full.pth.tar"


def _cli(*args, cwd=ROOT):
    """Run the CLI as a user does, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "tracker.weights", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The released-layout tiny checkpoint converted by the CLI (one subprocess shared by the tests below)."""
    out = tmp_path_factory.mktemp("convert") / "tiny256ce.safetensors"
    result = _cli("convert", FULL, out, "--config", TINY_YAML)
    assert result.returncode == 0, result.stderr
    assert "it loads to an identical model" in result.stdout
    return out


@pytest.fixture
def folder(tmp_path, converted):
    """A weights folder: the converted file listed as default, a listed but absent file, an unlisted file."""
    shutil.copy(converted, tmp_path / converted.name)
    shutil.copy(TINY_WEIGHTS, tmp_path / "dropped_in.pth.tar")
    entries = {
        converted.name: {
            "sha256": file_sha256(converted),
            "size": converted.stat().st_size,
            "config": "tiny256ce",
            "source": "converted from tiny256ce_ep0300_full.pth.tar",
            "default": True,
        },
        "gone.safetensors": {"sha256": "0" * 64, "size": 10, "config": "x", "source": "nowhere"},
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"files": entries}))
    return tmp_path


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor: same size, other bytes
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------------------
# convert


def test_converted_file_gives_an_identical_forward(converted):
    forward = torch.load(CONFORMANCE / "tiny256ce_forward.pt", map_location="cpu", weights_only=True)
    mine, cfg = load_model(None, converted)  # the config comes from the file
    assert cfg == dataclasses.replace(load_config(TINY_YAML), name="tiny256ce")  # the stem, not the path
    reference, _ = load_model(TINY_YAML, TINY_WEIGHTS)
    with torch.no_grad():
        inputs = (forward["template"], forward["search"])
        got = mine(*inputs, ce_template_mask=forward["ce_template_mask"])
        expected = reference(*inputs, ce_template_mask=forward["ce_template_mask"])
    for key in ("score_map", "size_map", "offset_map", "pred_boxes", "backbone_feat"):
        assert torch.equal(got[key], expected[key]), key
        assert (got[key] - forward[key]).abs().max().item() <= 1e-4, key  # and still the official numbers


def test_converting_our_file_again_keeps_its_training_record(converted, tmp_path):
    trained = tmp_path / "trained.safetensors"
    model, cfg = load_model(None, converted)
    save_safetensors(model, cfg, trained, extra={"training_command": "python -m tracker.train ...", "seed": "7"})
    again = tmp_path / "again.safetensors"
    assert main(["convert", str(trained), str(again)]) == 0
    meta = read_checkpoint(again).metadata
    assert (meta["training_command"], meta["seed"]) == ("python -m tracker.train ...", "7")
    assert meta["source_sha256"] == file_sha256(trained)


def test_converted_file_records_where_it_came_from(converted):
    meta = read_checkpoint(converted).metadata
    assert meta["source_file"] == FULL.name
    assert meta["source_sha256"] == file_sha256(FULL)
    assert meta["source_experiment"] == "vitb_256_mae_ce_32x4_ep300"
    assert meta["config_name"] == "tiny256ce"


def test_convert_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(FULL), str(out)]) == 1  # the tiny model is not in configs/
    assert "EMBED_DIM 64" in _assert_one_line_error(capsys.readouterr().err)
    assert main(["convert", str(FULL), str(tmp_path / "out.pth")]) == 1
    assert "must end in .safetensors" in _assert_one_line_error(capsys.readouterr().err)
    out.write_bytes(b"keep me")
    assert main(["convert", str(FULL), str(out), "--config", str(TINY_YAML)]) == 1
    assert "--force" in _assert_one_line_error(capsys.readouterr().err)
    assert out.read_bytes() == b"keep me"
    assert main(["convert", str(FULL), str(out), "--config", str(TINY_YAML), "--force"]) == 0
    assert read_checkpoint(out).config is not None
    assert not list(tmp_path.glob("*.partial.*"))


def test_convert_embeds_set_keys_and_refuses_unknown_ones(tmp_path, capsys):
    out = tmp_path / "calibrated.safetensors"
    args = ["convert", str(FULL), str(out), "--config", str(TINY_YAML)]
    assert main([*args, "--set", "TRACK.PRESENCE.BIAS=-3.5", "--set", "TRACK.LOST_SCORE=0.25"]) == 0
    _, cfg = load_model(None, out)  # the app reads the calibration from the file, no config flag needed
    assert (cfg.track.presence.bias, cfg.track.lost_score) == (-3.5, 0.25)
    meta = read_checkpoint(out).metadata
    assert meta["config_overrides"] == "TRACK.PRESENCE.BIAS=-3.5 TRACK.LOST_SCORE=0.25"
    assert meta["source_file"] == FULL.name
    assert main([*args, "--force", "--set", "TRACK.NO_SUCH_KEY=1"]) == 1
    assert "NO_SUCH_KEY" in _assert_one_line_error(capsys.readouterr().err)
    assert load_model(None, out)[1].track.lost_score == 0.25  # the failed run left the file as it was


def test_convert_can_name_the_embedded_config(tmp_path):
    out = tmp_path / "named.safetensors"
    assert main(["convert", str(FULL), str(out), "--config", str(TINY_YAML), "--name", "tiny_renamed"]) == 0
    assert load_model(None, out)[1].name == "tiny_renamed"


# ------------------------------------------------------------------------------------------------------------
# average


def _shifted_copy(converted, path, shift, **model_changes):
    """``converted`` with ``shift`` added to every floating-point tensor, and optionally another MODEL config."""
    model, cfg = load_model(None, converted)
    state = {k: v + shift if v.is_floating_point() else v for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_changes))
    save_safetensors(state, cfg, path)
    return path


def test_average_writes_the_mean_of_the_tensors(tmp_path, converted, capsys):
    up = _shifted_copy(converted, tmp_path / "up.safetensors", 1.0)
    down = _shifted_copy(converted, tmp_path / "down.safetensors", -3.0)
    out = tmp_path / "soup.safetensors"
    assert main(["average", str(out), str(up), str(down)]) == 0
    assert "it loads to an identical model" in capsys.readouterr().out
    base, _ = load_model(None, converted)
    soup, cfg = load_model(None, out)
    assert cfg == load_model(None, up)[1]
    for key, value in base.state_dict().items():
        expected = value - 1.0 if value.is_floating_point() else value
        torch.testing.assert_close(soup.state_dict()[key], expected, rtol=0, atol=1e-5)
    assert f"{up} (sha256 {file_sha256(up)})" in read_checkpoint(out).metadata["averaged_from"]


def test_average_refuses_one_file_and_unlike_models(tmp_path, converted, capsys):
    out = tmp_path / "soup.safetensors"
    assert main(["average", str(out), str(converted)]) == 1
    assert "at least two" in _assert_one_line_error(capsys.readouterr().err)
    other = _shifted_copy(converted, tmp_path / "other.safetensors", 0.0, template_context_gain=0.5)
    assert main(["average", str(out), str(converted), str(other)]) == 1
    assert "another MODEL config" in _assert_one_line_error(capsys.readouterr().err)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------------------
# info, list, verify


def test_info_on_a_released_training_checkpoint():
    result = _cli("info", FULL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    state = torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"]
    assert "training checkpoint of experiment vitb_256_mae_ce_32x4_ep300" in out
    assert "PyTorch zip, state dict under 'net'" in out
    assert f"parameters:   {parameter_count(state):,} in {len(state)} tensors" in out
    assert "dtypes:       float32, int64" in out
    assert file_sha256(FULL) in out
    assert "EMBED_DIM 64" in out  # no config in configs/ fits, and info says what would


def test_info_names_the_embedded_config_and_refuses_hostile_files(tmp_path, converted, capsys):
    assert main(["info", str(converted)]) == 0
    assert "tiny256ce (embedded in the file)" in capsys.readouterr().out
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    evil = tmp_path / "evil.pth.tar"
    torch.save({"net": {}, "settings": Payload()}, evil)
    assert main(["info", str(evil)]) == 1
    assert "refusing" in _assert_one_line_error(capsys.readouterr().err)
    assert not marker.exists()
    assert main(["info", str(tmp_path / "missing.pth")]) == 1
    assert "not found" in _assert_one_line_error(capsys.readouterr().err)


def test_list_shows_listed_and_dropped_in_files(folder, converted, capsys):
    assert main(["--dir", str(folder), "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {converted.name, "gone.safetensors", "dropped_in.pth.tar"}
    assert "(default)" in rows[converted.name] and file_sha256(converted)[:12] in rows[converted.name]
    assert "converted from tiny256ce_ep0300_full.pth.tar" in rows[converted.name]
    assert "[MISSING]" in rows["gone.safetensors"]
    assert "not in manifest" in rows["dropped_in.pth.tar"]
    assert file_sha256(TINY_WEIGHTS)[:12] in rows["dropped_in.pth.tar"]


def test_verify_passes_then_fails_on_a_changed_file(folder, converted, capsys):
    assert main(["--dir", str(folder), "verify", converted.name]) == 0
    assert capsys.readouterr().out.startswith(f"ok    {converted.name}")
    assert main(["--dir", str(folder), "verify"]) == 1  # gone.safetensors is listed but absent
    assert "FAIL  gone.safetensors: missing" in capsys.readouterr().out
    assert main(["--dir", str(folder), "verify", "dropped_in.pth.tar"]) == 1
    assert "not in the manifest" in capsys.readouterr().out
    _corrupt(folder / converted.name)
    result = _cli("--dir", folder, "verify", converted.name)
    assert result.returncode == 1
    assert f"FAIL  {converted.name}: sha256" in result.stdout


def test_verify_with_an_empty_manifest(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"files": {}}')
    assert main(["--dir", str(tmp_path), "verify"]) == 0
    assert "nothing to verify" in capsys.readouterr().out


def test_repository_manifest_is_well_formed():
    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    assert isinstance(manifest["files"], dict)
    for name, entry in weights_module.read_manifest().items():
        assert name == entry.name and len(entry.sha256) == 64


# ------------------------------------------------------------------------------------------------------------
# Bundled weights are checked; dropped-in files are found by name


def test_default_weights_are_sha256_checked(folder, converted, monkeypatch):
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    assert build_module.default_weights() == folder / converted.name
    _, cfg = load_model(None, build_module.default_weights())
    assert cfg.name == "tiny256ce"
    _corrupt(folder / converted.name)
    with pytest.raises(CheckpointError, match="is damaged or changed"):
        build_module.default_weights()
    with pytest.raises(CheckpointError, match="is damaged or changed"):  # also when named directly
        load_model(None, converted.name)


def test_no_bundled_model_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match="pass --weights FILE"):
        default_weights(tmp_path)


def test_dropped_in_file_is_found_by_name(folder, monkeypatch):
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    assert resolve_weights("dropped_in.pth.tar") == folder / "dropped_in.pth.tar"
    model, _ = load_model(TINY_YAML, "dropped_in.pth.tar")
    reference = torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    with pytest.raises(CheckpointError, match=r"not found \(looked at"):
        resolve_weights("OSTrack_ep0300.pth.tar")


def test_repository_relative_path_works_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("weights/manifest.json") == ROOT / "weights" / "manifest.json"
