"""Reading weights files: official layouts, released training checkpoints, hostile and broken files."""

import builtins
import json
import os
import pickle
import subprocess
import time
import zipfile

import numpy.testing._private.utils as numpy_test_utils
import pytest
import torch
import yaml

from tests.helpers import CONFORMANCE, TINY_WEIGHTS, TINY_YAML
from tracker import CheckpointError, build_model, load_config, load_model
from tracker.arch import describe, infer_config, parameter_count
from tracker.checkpoint import Checkpoint, read_checkpoint, save_safetensors
from tracker.resolve import config_for, load_state_into

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="shared/conformance is not beside the repo")

FULL = CONFORMANCE / "tiny256ce_ep0300_full.pth.tar"


@pytest.fixture(scope="module")
def ref_state():
    return torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)["net"]


def _loaded_state(path, config=TINY_YAML):
    model, _ = load_model(config, path)
    return model.state_dict()


def _assert_same_tensors(got, expected):
    assert sorted(got) == sorted(expected)  # safetensors stores keys sorted; the order carries no meaning
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype, key
        assert torch.equal(got[key], tensor), key


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def _meta_state(keys_file):
    entries = json.loads((CONFORMANCE / keys_file).read_text())["keys"]
    return {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype in entries}


# ------------------------------------------------------------------------------------------------------------
# Layouts that must load


def test_released_training_checkpoint_gives_the_same_model(ref_state):
    with pytest.raises(Exception, match="Weights only load failed"):  # the file needs the safe fallback
        torch.load(FULL, map_location="cpu", weights_only=True)
    _assert_same_tensors(_loaded_state(FULL), _loaded_state(TINY_WEIGHTS))
    _assert_same_tensors(_loaded_state(FULL), ref_state)


def test_training_checkpoint_carries_its_experiment_name():
    ckpt = read_checkpoint(FULL)
    assert ckpt.config_hint == "vitb_256_mae_ce_32x4_ep300"
    assert "'net'" in ckpt.layout and "8 other entries ignored" in ckpt.layout


def test_fp16_copy_loads_within_fp16_rounding(tmp_path, ref_state):
    half = {k: v.half() if v.is_floating_point() else v for k, v in ref_state.items()}
    path = tmp_path / "half.pth"
    torch.save({"net": half}, path)
    assert "float16" in read_checkpoint(path).dtypes
    got = _loaded_state(path)
    for key, tensor in ref_state.items():
        if tensor.is_floating_point():
            assert got[key].dtype == torch.float32
            assert torch.equal(got[key], tensor.half().float()), key  # exactly the fp16 rounding
            assert torch.allclose(got[key], tensor, rtol=1e-3, atol=1e-4), key
        else:
            assert torch.equal(got[key], tensor)


def test_ddp_module_prefix_is_stripped(tmp_path, ref_state):
    path = tmp_path / "ddp.pth.tar"
    torch.save({"net": {f"module.{k}": v for k, v in ref_state.items()}}, path)
    _assert_same_tensors(_loaded_state(path), ref_state)


def test_bare_state_dict_loads(tmp_path, ref_state):
    path = tmp_path / "bare.pth"
    torch.save(ref_state, path)
    assert read_checkpoint(path).layout == "bare state dict"
    _assert_same_tensors(_loaded_state(path), ref_state)


def test_safetensors_round_trip_with_embedded_config(tmp_path, ref_state):
    cfg = load_config(TINY_YAML)
    path = save_safetensors(ref_state, cfg, tmp_path / "tiny.safetensors")
    ckpt = read_checkpoint(path)
    assert ckpt.format == "safetensors"
    assert ckpt.config == cfg  # every field, the name included
    _assert_same_tensors(ckpt.state_dict, ref_state)
    model, loaded_cfg = load_model(None, path)  # no config given: the file's own
    assert loaded_cfg == cfg
    _assert_same_tensors(model.state_dict(), ref_state)


# ------------------------------------------------------------------------------------------------------------
# Files that ask to run code


class _Payload:
    """Pickles as a call of ``func(*args)``: what a hostile checkpoint does to run code while loading."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    touch_code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, touch_code),
        "builtins.exec": _Payload(builtins.exec, touch_code),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
        "numpy.testing._private.utils.runstring": _Payload(numpy_test_utils.runstring, touch_code, {}),
        "yaml.unsafe_load": _Payload(yaml.unsafe_load, f"!!python/object/apply:os.system ['touch {marker}']"),
        "torch.hub.load": _Payload(torch.hub.load, "someone/repo", "model"),
    }


def _write(kind, path, payload):
    if kind == "zip":
        torch.save({"net": {"w": torch.zeros(2)}, "settings": payload}, path)
    elif kind == "legacy":
        content = {"net": {"w": torch.zeros(2)}, "settings": payload}
        torch.save(content, path, _use_new_zipfile_serialization=False)
    else:  # a raw pickle: the payload is the first thing torch's legacy reader unpickles
        path.write_bytes(pickle.dumps(payload, protocol=2))


@pytest.mark.parametrize("kind", ["zip", "legacy", "raw"])
@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "builtins.eval",
        "builtins.exec",
        "subprocess.Popen",
        "numpy.testing._private.utils.runstring",
        "yaml.unsafe_load",
        "torch.hub.load",
    ],
)
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, name, kind):
    marker = tmp_path / "MARKER"
    path = tmp_path / f"evil_{kind}.pth.tar"
    _write(kind, path, _payloads(marker)[name])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    text = _one_line(err)
    assert text.startswith(f"refusing {path}")
    assert (name if name != "os.system" else "posix.system") in text  # pickle records os.system's real module
    if name == "subprocess.Popen":
        time.sleep(0.2)  # a spawned `touch` would need a moment
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "yaml.unsafe_load"])
def test_the_hostile_files_are_real(tmp_path, name):
    """Control for the test above: an ordinary unpickle of the same file does run the payload."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth.tar"
    _write("zip", path, _payloads(marker)[name])
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------------------------
# Broken files


@pytest.mark.parametrize("source", [TINY_WEIGHTS, FULL])
def test_truncated_file_is_a_clear_error(tmp_path, source):
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "truncated" in _one_line(err)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "photos.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday/readme.txt", "not weights")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "is a zip but no PyTorch checkpoint (no data.pkl)" in _one_line(err)


@pytest.mark.parametrize(
    ("first_byte", "expected"),
    [(b"", "is not a PyTorch checkpoint"), (b"\x80", "cannot be read")],  # noise; pickle-like noise
)
def test_random_bytes_are_a_clear_error(tmp_path, first_byte, expected):
    generator = torch.Generator().manual_seed(3)
    noise = torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).numpy().tobytes()
    path = tmp_path / "noise.pth"
    path.write_bytes(first_byte + noise)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert _one_line(err).startswith(f"{path} {expected}")


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        read_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("suffix", [".pth.tar", ".safetensors"])
def test_non_finite_tensor_is_refused_by_name(tmp_path, ref_state, bad, suffix):
    state = {k: v.clone() for k, v in ref_state.items()}
    state["backbone.blocks.5.attn.qkv.weight"][7, 3] = bad
    path = tmp_path / f"bad{suffix}"
    if suffix == ".safetensors":
        save_safetensors(state, load_config(TINY_YAML), path)
    else:
        torch.save({"net": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(TINY_YAML, path)
    assert "backbone.blocks.5.attn.qkv.weight" in _one_line(err)
    assert "NaN or inf" in str(err.value)


# ------------------------------------------------------------------------------------------------------------
# Wrong architecture and inference


def test_other_architecture_lists_at_most_ten_mismatches_and_what_fits():
    with pytest.raises(CheckpointError) as err:
        load_model("ostrack_vitb256_ce", TINY_WEIGHTS)
    text = _one_line(err)
    total = int(text.split(" mismatches")[0].rsplit("(", 1)[1])
    assert total > 10
    listed = text.split("mismatches: ", 1)[1].split("; and ")[0].split("; ")
    assert len(listed) == 10 and all(item.startswith("shape ") for item in listed)
    assert f"and {total - 10} more" in text
    # The tiny model is not in configs/, so the message says which YAML would build it.
    needs = ("EMBED_DIM 64", "DEPTH 12", "NUM_CHANNELS 32", "DATA.TEMPLATE.SIZE 128", "DATA.SEARCH.SIZE 256")
    for needed in needs:
        assert needed in text


def test_wrong_search_size_names_the_config_that_fits():
    state = _meta_state("vitb384ce_keys.json")
    cfg = load_config("ostrack_vitb256_ce")
    with torch.device("meta"):
        model = build_model(cfg)
    with pytest.raises(CheckpointError) as err:
        load_state_into(model, state, "vitb384.pth.tar", cfg)
    text = _one_line(err)
    assert "(2 mismatches: shape backbone.pos_embed_z (1, 144, 768)" in text
    assert "shape backbone.pos_embed_x (1, 576, 768) (model (1, 256, 768))" in text
    assert text.endswith("use --config ostrack_vitb384_ce")


@pytest.mark.parametrize(
    ("keys_file", "hint", "expected"),
    [
        ("vitb256ce_keys.json", None, "ostrack_vitb256_ce"),
        ("vitb384ce_keys.json", None, "ostrack_vitb384_ce"),
        ("vitb256ce_keys.json", "vitb_256_mae_ce_32x4_ep300", "ostrack_vitb256_ce"),
        ("vitb256ce_keys.json", "vitb_256_mae_32x4_ep300", "ostrack_vitb256"),
        ("vitb384ce_keys.json", "vitb_384_mae_32x4_ep300", "ostrack_vitb384"),
        ("vitb384ce_keys.json", "ostrack", "ostrack_vitb384_ce"),  # a hint that says nothing: CE preferred
    ],
)
def test_infers_the_official_configs_from_shapes_alone(keys_file, hint, expected):
    state = _meta_state(keys_file)
    cfg = infer_config(state, source=keys_file, hint=hint)
    assert cfg.name == expected
    with torch.device("meta"):
        built = build_model(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in built.items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_checkpoint_uses_its_experiment_hint():
    state = _meta_state("vitb256ce_keys.json")
    plain = Checkpoint("x.pth.tar", state, "torch", config_hint="vitb_256_mae_32x4_ep300")
    assert config_for(plain)[0].name == "ostrack_vitb256"
    assert config_for(Checkpoint("x.pth.tar", state, "torch"))[0].name == "ostrack_vitb256_ce"


def test_describe_reads_the_official_sizes():
    declared = json.loads((CONFORMANCE / "vitb256ce_keys.json").read_text())["num_params"]
    line = describe(_meta_state("vitb256ce_keys.json"))
    assert line.startswith("ViT embed dim 768, depth 12, MLP ratio 4, stride 16, template 128 px, search 256")
    assert f"head channels 256, {declared:,} parameters" in line
    assert "not an OSTrack layout" in describe({"weight": torch.zeros(3, 3)})


def test_tiny_file_infers_the_tiny_config_when_it_is_a_candidate(ref_state):
    cfg = infer_config(ref_state, source="tiny", extra_configs=[TINY_YAML.parent])
    assert cfg == load_config(TINY_YAML)
    with torch.device("meta"):
        built = build_model(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in built.items()} == {k: tuple(v.shape) for k, v in ref_state.items()}
    assert parameter_count(ref_state) == sum(p.numel() for p in build_model(cfg).parameters())


def test_tiny_file_without_a_fitting_config_says_what_to_write(ref_state):
    with pytest.raises(CheckpointError) as err:
        infer_config(ref_state, source="tiny.pth.tar")
    text = _one_line(err)
    assert text.startswith("no config in configs/ fits tiny.pth.tar (ViT embed dim 64")
    assert "EMBED_DIM 64, DEPTH 12, MLP_RATIO 4.0, STRIDE 16" in text and text.endswith("--config")


def test_non_ostrack_state_dict_is_named_as_such():
    with pytest.raises(CheckpointError, match="is not an OSTrack state dict"):
        infer_config({"fc.weight": torch.zeros(2, 2)}, source="resnet.pth")


def test_conv_stem_weights_infer_their_stride_and_config():
    cfg = load_config("bundled_small")
    assert cfg.backbone.stem == "conv"
    with torch.device("meta"):
        state = build_model(cfg).state_dict()
    assert describe(state).startswith("ViT embed dim 128, depth 6, MLP ratio 4, stride 16, template 80 px, search 160")
    assert infer_config(state, source="bundled").name == "bundled_small"
