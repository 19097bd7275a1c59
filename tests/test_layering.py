"""Layering, enforced (issue 17): each room of vj imports only the rooms below it (the engine nothing of presets,
audio or shows; the preset schema neither the live show nor the MIDI port code), the vocabulary presets share with
the engine is defined once, and `vj check` and `vj schema` import none of torch, pygame, sounddevice or mido."""

import ast
import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

HEAVY = ("torch", "pygame", "sounddevice", "mido")
# each shared word: the one module that defines it
VOCABULARY = {
    **dict.fromkeys(
        ("BORDER_MODES", "INFILL_MODES", "SAMPLING_MODES", "PYTTI_FLAGS", "QUALITIES"), "vj/engine/vocabulary.py"
    ),
    **dict.fromkeys(
        ("QUANTIZE", "NOTE_ACTIONS", "SCENE_ACTIONS", "CC_FIELDS", "CCBinding", "NoteBinding", "MidiSection"),
        "vj/config/live_keys.py",
    ),
}


def sources(folder):
    return sorted((ROOT / folder).rglob("*.py"))


def module_of(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path, module=None):
    """Every module a file (module `module`, by default its own) imports, anywhere in it (function bodies too):
    `from a import b` counts as `a` and `a.b`, relative imports are made absolute, and
    `importlib.import_module("x")` counts as `x`."""
    package = (module or module_of(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def within(name, packages):
    return any(name == p or name.startswith(p + ".") for p in packages)


# Each room of vj and the rooms it may import from (its own always). The engine knows nothing of presets, audio or
# shows; config and language import only the torch-free words they share with the engine; audio reads presets;
# show (session, director, transitions) joins them; live and commands drive a show; the CLI sits on top.
SHARED_WORDS = ["vj.engine.vocabulary", "vj.engine.diffusion.prompt_edits"]
BASE = ["vj.errors", "vj.throttled_log", "vj.reconnect"]
LAYERS = {
    "vj.engine": BASE,
    "vj.language": BASE + SHARED_WORDS,
    # a preset that names open_clip `perceptors` is checked against open_clip's own list of models
    # ... and a preset's ControlNets are checked against the model from their saved configs (torch-free)
    "vj.config": BASE + SHARED_WORDS + ["vj.language", "vj.engine.guidance.perceptors", "vj.engine.diffusion.net_fit"],
    "vj.audio": BASE + ["vj.config", "vj.language"],
    "vj.video": BASE + ["vj.config"],
    "vj.show": BASE + ["vj", "vj.engine", "vj.config", "vj.language", "vj.audio", "vj.video"],
    "vj.live": BASE + ["vj.engine", "vj.config", "vj.language", "vj.audio", "vj.video", "vj.show"],
    "vj.commands": BASE + ["vj.engine", "vj.config", "vj.language", "vj.audio", "vj.video", "vj.show", "vj.live"],
    # the cluster spreads commands over Ray workers: it drives them, they never import it
    "vj.cluster": BASE + ["vj.engine", "vj.config", "vj.language", "vj.audio", "vj.video", "vj.show", "vj.commands"],
}


def room(name):
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "vj" and len(parts) > 1 else None


def layer_violations(top, paths=None):
    """What the files of room `top` (or `paths`, as if they were in it) import from rooms it may not use."""
    allowed = [top, *LAYERS[top]]
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} imports {name}"
        for path in (paths or sources(top.replace(".", "/")))
        for name in sorted(imported(path, None if path.is_relative_to(ROOT) else f"{top}.probe"))
        if room(name) is not None and not within(name, allowed)
    ]


@pytest.mark.parametrize("top", sorted(LAYERS))
def test_each_room_imports_only_the_rooms_below_it(top):
    assert layer_violations(top) == []


def test_every_room_of_vj_has_a_layer():
    rooms = {room(module_of(p)) for p in sources("vj")} - {None, "vj.cli", "vj.__main__", *BASE}
    assert rooms == set(LAYERS)


def test_the_layer_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from vj.live.loop import EngineLoop\nfrom vj.engine.vocabulary import QUALITIES\n"
        "from vj.engine.diffusion.frames import FrameEngine\n"
    )
    assert layer_violations("vj.config", [probe]) == [
        f"{probe} imports vj.engine.diffusion.frames",
        f"{probe} imports vj.engine.diffusion.frames.FrameEngine",
        f"{probe} imports vj.live.loop",
        f"{probe} imports vj.live.loop.EngineLoop",
    ]


def test_the_checker_sees_imports_of_every_form(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        "import vj.live.loop\nfrom ..live.controls import midi\nfrom . import schema\ndef f():\n"
        "    from vj.live.scene_triggers import LiveScenes\n    importlib.import_module('vj.x')\n"
    )
    found = imported(path, "vj.config.probe")
    assert {"vj.live.loop", "vj.live.controls.midi", "vj.config.schema", "vj.live.scene_triggers", "vj.x"} <= found
    assert within("vj.live.controls.midi", ["vj.live.controls.midi"])
    assert not within("vj.live.controls.midi_keys", ["vj.live.controls.midi"])


def test_the_shared_vocabulary_is_defined_once():
    defined = {}
    for path in sources("vj"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                else []
            )
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names = [node.name]
            for name in names:
                if name in VOCABULARY:
                    defined.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert defined == {name: [where] for name, where in VOCABULARY.items()}


def test_every_pytti_flag_is_a_preset_key():
    from vj.engine.vocabulary import PYTTI_FLAGS
    from vj.config.schema import FIELDS

    assert set(PYTTI_FLAGS) <= set(FIELDS)


CHECK_AND_SCHEMA = """
import contextlib, io, json, sys
import vj.cli
light, guided = json.loads(sys.argv[1])
heavy = {HEAVY!r}
loaded = lambda: sorted(m for m in heavy if m in sys.modules)
with contextlib.redirect_stdout(io.StringIO()):
    codes = [vj.cli.main(["schema"]), vj.cli.main(["schema", "--markdown"]), vj.cli.main(["check", *light])]
    after_light = loaded()
    codes.append(vj.cli.main(["check", *guided]) if guided else 0)
print(json.dumps({{"codes": codes, "after_light": after_light, "after_all": loaded()}}))
""".format(HEAVY=HEAVY)


def test_check_and_schema_import_no_torch_pygame_sounddevice_or_mido():
    """In one process: `vj schema` and `vj check` of every shipped preset. A preset that names open_clip
    `perceptors` loads open_clip (and so torch) to check the names, as the schema says; every other preset
    and the schema load none of the four, and no preset loads the display, audio device or MIDI libraries."""
    presets = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "presets").glob("*.yaml"))
    guided = [p for p in presets if "perceptors" in (yaml.safe_load((ROOT / p).read_text()) or {})]
    light = [p for p in presets if p not in guided]
    assert light
    result = subprocess.run(
        [sys.executable, "-c", CHECK_AND_SCHEMA, json.dumps([light, guided])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0], result.stderr
    assert report["after_light"] == []
    assert not set(report["after_all"]) & {"pygame", "sounddevice", "mido"}
