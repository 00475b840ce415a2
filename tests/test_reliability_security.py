"""Weights and the code base under hostile or broken input: every weights problem is one line through the
command line, bundled files are checked against their sha256 at load, nothing in a weights file runs, no shell
sees a user's string, and sources are URLs of the four stream schemes or plain paths."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from app import sources
from app.sources import LIVE_SCHEMES, open_source
from tests.helpers import ROOT, TINY_WEIGHTS, TINY_YAML
from tests.test_reliability_common import (
    assert_one_line_error,
    error_lines,
    one_torch_thread,  # noqa: F401 (an autouse fixture)
    run_cli,
    scene,
    text_rows,
    write_video,
)
from tracker import weights as weights_module
from tracker.checkpoint import read_checkpoint, save_safetensors
from tracker.errors import InputError
from tracker.weights import default_weights, file_sha256

CODE_DIRS = ("tracker", "app")


@pytest.fixture(scope="module")
def frames3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames3")
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:04d}.png"), scene(i))
    return folder


def track_with(weights, frames, *extra) -> int:
    return run_cli("--weights", weights, "--device", "cpu", "--source", frames, "--init-box", "20,40,30,30", *extra)


# -- weights problems through the command line ---------------------------------------------------------------


def test_truncated_weights(tmp_path, frames3, capfd):
    cut = tmp_path / "cut.pth.tar"
    data = TINY_WEIGHTS.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert track_with(cut, frames3, "--config", TINY_YAML) == 2
    assert_one_line_error(capfd.readouterr().err, "truncated")


def test_weights_of_another_architecture(tmp_path, micro, frames3, capfd):
    assert track_with(TINY_WEIGHTS, frames3, "--config", "ostrack_vitb256_ce") == 2
    assert_one_line_error(capfd.readouterr().err, "does not fit config 'ostrack_vitb256_ce'")
    assert track_with(micro, frames3, "--config", TINY_YAML) == 2  # our own file, forced onto another config
    assert_one_line_error(capfd.readouterr().err, f"{micro} does not fit config")


class Payload:
    """Pickles as a call: what a hostile checkpoint does to run code while it is being loaded."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("how", ["os.system", "exec", "torch.hub.load"])
def test_weights_that_try_to_run_code_are_refused_and_nothing_runs(tmp_path, frames3, capfd, how):
    marker = tmp_path / "MARKER"
    payload = {
        "os.system": Payload(os.system, f"touch {marker}"),
        "exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "torch.hub.load": Payload(torch.hub.load, str(tmp_path), "model", "local"),
    }[how]
    state = torch.load(TINY_WEIGHTS, map_location="cpu", weights_only=True)
    evil = tmp_path / "evil.pth.tar"
    torch.save({"net": state["net"], "settings": payload}, evil)  # real weights, and the payload beside them
    out = tmp_path / "boxes.txt"
    assert track_with(evil, frames3, "--config", TINY_YAML, "--save-results", out) == 2
    line = assert_one_line_error(capfd.readouterr().err, f"refusing {evil}")
    assert "get the file from a trusted source" in line
    assert not marker.exists() and not out.exists()


def test_weights_with_nan_values(tmp_path, micro, frames3, capfd):
    ckpt = read_checkpoint(micro)
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    state["box_head.conv1_ctr.0.weight"].view(-1)[0] = float("nan")
    bad = save_safetensors(state, ckpt.config, tmp_path / "nan.safetensors")
    assert track_with(bad, frames3) == 2
    assert_one_line_error(capfd.readouterr().err, "tensor box_head.conv1_ctr.0.weight contains NaN or inf")


def test_a_directory_given_as_weights(tmp_path, frames3, capfd):
    assert track_with(tmp_path, frames3, "--config", TINY_YAML) == 2
    assert_one_line_error(capfd.readouterr().err, str(tmp_path))


# -- the bundled model is checked against its manifest whenever it loads -----------------------------------


def make_weights_folder(folder: Path, micro: Path, **entry_changes) -> Path:
    folder.mkdir()
    shutil.copy(micro, folder / "bundled.safetensors")
    shutil.copy(micro, folder / "grounding.safetensors")  # stands in for another model kind in the folder
    entry = {"sha256": file_sha256(micro), "size": micro.stat().st_size, "config": "micro", "default": True}
    files = {
        # Listed first and marked default for its own kind: must never be taken for the box tracker.
        "grounding.safetensors": {**entry, "kind": "grounding"},
        "bundled.safetensors": {**entry, **entry_changes},
    }
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder


def test_bundled_model_loads_when_its_sha256_matches(tmp_path, micro, frames3, monkeypatch, capfd):
    folder = make_weights_folder(tmp_path / "weights", micro)
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    assert default_weights() == folder / "bundled.safetensors"
    out = tmp_path / "boxes.txt"
    rc = run_cli("--device", "cpu", "--source", frames3, "--init-box", "20,40,30,30", "--save-results", out)
    assert rc == 0 and error_lines(capfd.readouterr().err)[0].startswith("tracked 3 frames")
    assert len(text_rows(out)) == 3


@pytest.mark.parametrize("damage", ["one byte", "manifest sha256", "manifest size"])
@pytest.mark.parametrize("named", [False, True])
def test_bundled_model_that_does_not_match_its_manifest_is_refused(tmp_path, micro, frames3, monkeypatch, capfd,
                                                                    damage, named):  # fmt: skip
    changes = {
        "one byte": {},
        "manifest sha256": {"sha256": hashlib.sha256(b"another file").hexdigest()},
        "manifest size": {"size": micro.stat().st_size + 1},
    }[damage]
    folder = make_weights_folder(tmp_path / "weights", micro, **changes)
    if damage == "one byte":
        path = folder / "bundled.safetensors"
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01  # inside the last tensor: still a readable file, silently other numbers
        path.write_bytes(bytes(data))
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    args = ["--weights", "bundled.safetensors"] if named else []  # by name in weights/, or as the default
    rc = run_cli(*args, "--device", "cpu", "--source", frames3, "--init-box", "20,40,30,30")
    assert rc == 2
    assert_one_line_error(capfd.readouterr().err, "bundled.safetensors is damaged or changed")


# -- the code base: safe loaders only, no shell, no eval ----------------------------------------------------


def python_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return ast.unparse(kw.value)
    return None


def test_code_base_is_found():
    names = {p.relative_to(ROOT).as_posix() for p in python_files()}
    assert {"tracker/checkpoint.py", "tracker/safe_unpickle.py", "app/sources.py", "app/cli.py"} <= names


def test_every_torch_load_is_weights_only_or_the_restricted_unpickler():
    seen = []
    for path in python_files():
        for node, func in calls(path):
            if func == "torch.load":
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                seen.append(where)
                weights_only = keyword(node, "weights_only")
                restricted = path.name == "safe_unpickle.py" and keyword(node, "pickle_module") == "_pickle_module"
                assert weights_only == "True" or restricted, f"{where}: torch.load without weights_only=True"
    assert any(w.startswith("tracker/checkpoint.py") for w in seen)  # the scan really saw the loaders


FORBIDDEN_CALLS = {
    "os.system",
    "os.popen",
    "os.execv",
    "os.execvp",
    "os.spawnv",
    "os.spawnlp",
    "eval",
    "exec",
    "pickle.load",
    "pickle.loads",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "torch.jit.load",
    "marshal.loads",
}


SUBPROCESS_CALLS = {f"subprocess.{name}" for name in ("run", "call", "check_call", "check_output", "Popen")}


def shell_problems(path_name: str, tree: ast.AST) -> list[str]:
    """Calls in ``tree`` that could hand a string to a shell or to the interpreter."""
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, where = ast.unparse(node.func), f"{path_name}:{node.lineno}"
        if func in FORBIDDEN_CALLS:
            problems.append(f"{where}: {func}")
        if keyword(node, "shell") not in (None, "False"):
            problems.append(f"{where}: shell={keyword(node, 'shell')}")
        # A program and its arguments as a list literal never meet a shell; anything else cannot be checked here.
        if func in SUBPROCESS_CALLS and not (node.args and isinstance(node.args[0], ast.List | ast.Tuple)):
            problems.append(f"{where}: {func} without an argument list")
        if func.endswith(("np.load", "numpy.load")) and keyword(node, "allow_pickle") not in (None, "False"):
            problems.append(f"{where}: np.load with allow_pickle")
    return problems


def test_no_shell_no_eval_no_unsafe_deserialisation():
    problems = []
    for path in python_files():
        problems += shell_problems(str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8")))
    assert problems == []


def test_the_scan_would_see_each_forbidden_call():
    """Control for the scan above: the same rules flag code that does what they forbid, and pass what is fine."""
    bad = (
        "os.system(cmd)\nsubprocess.run(cmd, shell=True)\nsubprocess.Popen(user_text)\nyaml.load(text)\n"
        "eval(text)\nnp.load(path, allow_pickle=True)\n"
    )
    flagged_lines = {problem.split(":")[1] for problem in shell_problems("bad.py", ast.parse(bad))}
    assert flagged_lines == {"1", "2", "3", "4", "5", "6"}  # every line of it
    fine = "subprocess.run(['lscpu'], check=False)\nyaml.safe_load(text)\nnp.load(path, mmap_mode='r')\n"
    assert shell_problems("fine.py", ast.parse(fine)) == []


# -- sources: four stream schemes, everything else is a path ------------------------------------------------


class Spy:
    def __init__(self) -> None:
        self.targets: list[object] = []

    def factory(self, target):
        self.targets.append(target)
        return cv2.VideoCapture(target)


def test_stream_schemes_are_exactly_the_four_opencv_should_open():
    assert sorted(LIVE_SCHEMES) == ["http", "https", "rtsp", "rtsps"]


@pytest.mark.parametrize(
    "spec",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/clip.mp4",
        "udp://127.0.0.1:9",
        "tcp://127.0.0.1:9",
        "rtmp://127.0.0.1/live",
        "smb://server/share/clip.mp4",
        "data://text/plain;base64,AAAA",
        "concat:a.mp4|b.mp4",
        "pipe:0",
        "subfile,,0,100,:clip.mp4",
        "http:clip.mp4",
        "²",
    ],
)
def test_other_schemes_and_protocol_strings_never_reach_opencv(spec):
    spy = Spy()
    with pytest.raises(InputError) as info:
        open_source(spec, capture_factory=spy.factory)
    assert spy.targets == []  # refused before OpenCV (and FFmpeg's own protocols) saw it
    assert "\n" not in str(info.value)


def test_a_file_named_like_an_ffmpeg_protocol_is_read_as_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.avi", "b.avi"):
        write_video(tmp_path / name, 10)
    tricky = "concat:a.avi|b.avi"  # FFmpeg would splice a.avi and b.avi (20 frames) if it saw this name
    write_video(tmp_path / "own.avi", 3)
    (tmp_path / "own.avi").rename(tmp_path / tricky)
    spy = Spy()
    with open_source(tricky, capture_factory=spy.factory) as source:
        frames = []
        while (frame := source.read(5.0)) is not None or not source.ended:
            if frame is not None:
                frames.append(frame)
    assert spy.targets == [str(tmp_path / tricky)]  # an absolute path: FFmpeg reads a file
    assert len(frames) == 3  # its own frames, not the 20 of a.avi and b.avi


def test_stream_urls_keep_their_timeouts(monkeypatch):
    opened = []

    class Capture:
        def __init__(self, target, api=None, params=None) -> None:
            opened.append((target, params))

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", Capture)
    for url in ("rtsp://127.0.0.1:9/a", "https://127.0.0.1:9/b"):
        with pytest.raises(InputError, match="cannot open"):
            open_source(url)
    for _, params in opened:
        settings = dict(zip(params[::2], params[1::2], strict=True))
        assert settings[cv2.CAP_PROP_OPEN_TIMEOUT_MSEC] == sources.OPEN_TIMEOUT_MS
        assert settings[cv2.CAP_PROP_READ_TIMEOUT_MSEC] == sources.READ_TIMEOUT_MS
