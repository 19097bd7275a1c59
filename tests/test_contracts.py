"""The typed contracts between vj's parts (issue 17): one base error for what users read, one engine interface,
one live audio interface, one audio source interface; the real classes and the tests' fakes satisfy them."""

import ast
import importlib

import numpy as np
import pytest

from conftest import ROOT, tone
from test_live_show import FailingEngine
from vj.audio.sources.files import ArraySource, AudioSource, FileSource, SilenceSource
from vj.config.loading import load_preset
from vj.engine.contract import Engine
from vj.engine.errors import EngineError, OutOfMemory
from vj.errors import AudioError, VjError
from vj.live.audio_feed import AudioFeed, SilentAudio

# ValueErrors of the two small languages and the YAML loader: the preset's loader turns them into PresetError lines
# naming the file, key and line, so the user never reads them on their own.
INTERNAL = {"ExpressionError", "SceneError", "EditSyntaxError", "DuplicateKeyError"}


def error_classes():
    """(module, class name) of every class named *Error defined in vj."""
    for path in sorted((ROOT / "vj").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                yield module, node.name


@pytest.mark.parametrize("module, name", sorted(error_classes()))
def test_every_error_the_user_reads_is_a_vj_error(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, VjError) != (name in INTERNAL)


def test_the_engine_and_audio_errors_sit_under_the_base():
    assert issubclass(OutOfMemory, EngineError) and issubclass(EngineError, VjError)
    assert issubclass(AudioError, VjError)


def test_the_command_line_prints_any_vj_error_as_one_line(monkeypatch, capsys):
    from vj import cli
    from vj.commands import devices

    def report():
        raise AudioError("no sound card here; plug one in")

    monkeypatch.setattr(devices, "report", report)
    assert cli.main(["devices"]) == 2
    assert capsys.readouterr().err == "vj devices: error: no sound card here; plug one in\n"


def test_the_engines_and_the_fake_satisfy_the_engine_interface(tiny):
    from vj.engine.diffusion.frames import EngineSettings, FrameEngine
    from vj.engine.guidance.objective import CutoutSettings, Objective
    from vj.engine.guidance.perceptors import tiny_perceptor
    from vj.engine.pixels.engine import PixelEngine, PixelSettings

    objective = Objective([tiny_perceptor("cpu")], None, CutoutSettings())
    engines = [
        FrameEngine(tiny, EngineSettings(width=64, height=64)),
        PixelEngine(PixelSettings(width=64, height=64), objective),
        FailingEngine(RuntimeError("boom")),
    ]
    assert all(isinstance(engine, Engine) for engine in engines)
    assert not isinstance(object(), Engine)


def test_the_audio_kinds_satisfy_their_interfaces(tmp_path, write_audio):
    path = tmp_path / "p.yaml"
    path.write_text("scenes: a:1\nbpm: 120\n")
    assert isinstance(SilentAudio(load_preset(path), lambda: 0.0), AudioFeed)
    assert not isinstance(object(), AudioFeed)
    sources = [ArraySource(np.zeros(10), 48000), SilenceSource(), FileSource(write_audio(tone(440, 0.1)))]
    assert all(isinstance(s, AudioSource) for s in sources)
    for s in sources:
        s.close()
