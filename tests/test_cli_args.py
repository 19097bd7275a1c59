"""Command-line values are checked before any work: one line naming the option and what is valid, exit status 2."""

import logging

import pytest
import torch

from conftest import ROOT, run_vj, tone, write
from vj import cli

PRESET = ROOT / "presets" / "pytti_audio_example.yaml"


def vj(capsys, *args):
    """(exit status, stderr) of `vj ARGS` run in this process."""
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def assert_one_line_error(status, err, fragment):
    assert status == 2, err
    assert err.endswith("\n") and err.count("\n") == 1 and fragment in err, err


@pytest.fixture
def no_models(monkeypatch):
    """Loading a model fails the test: every check comes before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("vj.engine.diffusion.models.load_components", refuse)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["bench", "--frames", 0], "vj bench: error: argument --frames: must be an integer >= 1, got 0"),
        (["bench", "--frames", -3], "argument --frames: must be an integer >= 1, got -3"),
        (["bench", "--steps", 0], "argument --steps: must be between 1 and 50, got 0"),
        (["bench", "--width", 100], "argument --width: must be a multiple of 8 and at least 64, got 100"),
        (["bench", "--height", "big"], "argument --height: expected an integer, got 'big'"),
        (["render", PRESET, "-o", "x.mp4", "--fps", 0], "argument --fps: must be between 1 and 240, got 0"),
        (["render", PRESET, "-o", "x.mp4", "--duration", "inf"], "argument --duration: expected a finite number"),
        (["render", PRESET, "-o", "x.mp4", "--start", -1], "argument --start: must be >= 0, got -1"),
        (["render", PRESET, "-o", "x.mp4", "--seed", "1.5"], "argument --seed: expected an integer, got '1.5'"),
        (["render", PRESET, "-o", "x.mp4", "--height", 60], "argument --height: must be a multiple of 8"),
        (["analyze", "t.wav", "--preset", PRESET, "-o", "v.csv", "--fps", "nan"], "argument --fps: expected a finite"),
        (
            ["morph", PRESET, "--from", "a", "--to", "b", "-o", "m.png", "--steps", 1],
            "argument --steps: must be an integer >= 2, got 1",
        ),
        (["prerender", PRESET, "--width", 12], "argument --width: must be a multiple of 8"),
        (["live", PRESET, "--width", 60], "argument --width: must be a multiple of 8"),
        (["live", PRESET, "--sample-rate", 0], "argument --sample-rate: must be an integer >= 1, got 0"),
        (["live", PRESET, "--blocksize", -1], "argument --blocksize: must be between 0 and 65536, got -1"),
    ],
)
def test_numeric_options_are_checked(capsys, args, fragment):
    assert_one_line_error(*vj(capsys, *args), fragment)


def test_a_bad_value_is_one_line_from_the_real_command():
    result = run_vj("bench", "--frames", 0)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "vj bench: error: argument --frames: must be an integer >= 1, got 0 (see vj bench --help)\n"


@pytest.fixture
def track(write_audio):
    return write_audio(tone(100, 4.0), name="song.wav")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (
            ["analyze", "{track}", "--preset", PRESET, "-o", "/nonexistent/x.csv"],
            "vj analyze: error: -o '/nonexistent/x.csv': folder '/nonexistent' does not exist",
        ),
        (["analyze", "{track}", "--preset", PRESET, "-o", "{tmp}"], "is a folder; give a file name in it"),
        (
            ["analyze", "{track}", "--preset", PRESET, "-o", "{tmp}/v.csv", "--plot", "{tmp}/v.txt"],
            "--plot '{tmp}/v.txt' must end in ",
        ),
        (
            ["render", PRESET, "--audio", "{track}", "-o", "{tmp}/e.mp4", "--frames", "{tmp}/missing/frames"],
            "--frames '{tmp}/missing/frames': folder '{tmp}/missing' does not exist",
        ),
        (
            ["render", PRESET, "--audio", "{track}", "-o", "/nonexistent/e.mp4"],
            "vj render: error: -o '/nonexistent/e.mp4': folder '/nonexistent' does not exist",
        ),
        (["render", PRESET, "--audio", "{track}", "-o", "{tmp}/e.avi"], "-o '{tmp}/e.avi' must end in .mp4"),
        (
            ["render", PRESET, "--audio", "{track}", "-o", "{tmp}/e.mp4", "--frames", "{track}/frames"],
            "--frames '{track}/frames': '{track}' is a file, not a folder",
        ),
        (
            ["morph", PRESET, "--from", "spring", "--to", "autumn", "-o", "/nonexistent/m.png"],
            "vj morph: error: -o '/nonexistent/m.png': folder '/nonexistent' does not exist",
        ),
        (["morph", PRESET, "--from", "spring", "--to", "autumn", "-o", "{tmp}/m.gif"], "must end in .png or .mp4"),
    ],
)
def test_outputs_are_checked_before_the_work(no_models, capsys, tmp_path, track, args, fragment):
    def fill(text):
        return str(text).format(track=track, tmp=tmp_path)

    assert_one_line_error(*vj(capsys, *map(fill, args)), fill(fragment))
    assert not (tmp_path / "v.csv").exists()


@pytest.mark.parametrize("command", ["analyze", "render"])
def test_a_start_past_the_end_is_the_same_message_everywhere(no_models, capsys, tmp_path, track, command):
    args = {
        "analyze": ["analyze", track, "--preset", PRESET, "-o", tmp_path / "v.csv"],
        "render": ["render", PRESET, "--audio", track, "-o", tmp_path / "v.mp4"],
    }[command]
    status, err = vj(capsys, *args, "--start", 100)
    assert status == 2 and err == f"vj {command}: error: --start 100 s is past the end of '{track}' (4.0 s long)\n"
    status, err = vj(capsys, *args, "--start", 3.99)
    assert_one_line_error(status, err, "--start 3.99 s leaves 0.010 s of")


def test_a_start_past_the_scenes_without_a_track(no_models, capsys, tmp_path):
    preset = write(tmp_path, "scenes: a || b\nscene_duration: 2\n")
    status, err = vj(capsys, "render", preset, "-o", tmp_path / "v.mp4", "--start", 5)
    assert status == 2 and err == "vj render: error: --start 5 s is past the end of the scenes (4 s in all)\n"


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_compiling_drops_only_torchs_no_cuda_runtime_warning(monkeypatch, tmp_path):
    """On a machine without a GPU, inductor's import of torch.utils.cpp_extension logs that CUDA_HOME holds no
    runtime; every command's --compile goes through compile_components, whose torch.compile (minutes on a CPU)
    is replaced here by that probe and another warning."""
    import torch.utils.cpp_extension as cpp_extension

    from vj.engine.diffusion.models import compile_components, load_components

    logger = logging.getLogger("torch.utils.cpp_extension")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def fake_compile(module, **options):
        cpp_extension._find_cuda_home()
        logger.warning("another warning")
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    recorder = Recorder()
    logger.addHandler(recorder)
    try:
        compile_components(load_components("tiny", device="cpu"))
    finally:
        logger.removeHandler(recorder)
    assert recorder.messages == ["another warning"] * 3


def test_live_checks_its_stats_file_before_opening_anything(no_models, capsys, tmp_path):
    status, err = vj(capsys, "live", PRESET, "--model", "tiny", "--stats", tmp_path / "missing" / "s.jsonl")
    assert_one_line_error(
        status, err, f"--stats '{tmp_path}/missing/s.jsonl': folder '{tmp_path}/missing' does not exist"
    )
