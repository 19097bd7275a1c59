"""Layering, enforced (issue 17): the engine imports nothing from vj, the preset schema imports neither the live show
nor the MIDI port code, the vocabulary presets share with the engine is defined once, and `vj check` and `vj schema`
import none of torch, pygame, sounddevice or mido."""

import ast
import json
import subprocess
import sys

import yaml

from conftest import ROOT

HEAVY = ("torch", "pygame", "sounddevice", "mido")
# each shared word: the one module that defines it
VOCABULARY = {
    **dict.fromkeys(("BORDER_MODES", "INFILL_MODES", "SAMPLING_MODES", "PYTTI_FLAGS", "QUALITIES"),
                    "engine/vocabulary.py"),
    **dict.fromkeys(("QUANTIZE", "NOTE_ACTIONS", "SCENE_ACTIONS", "CC_FIELDS", "CCBinding", "NoteBinding",
                     "MidiSection"), "vj/preset/live_keys.py"),
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
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def within(name, packages):
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(folder, forbidden):
    return [f"{path.relative_to(ROOT)} imports {name}" for path in sources(folder)
            for name in sorted(imported(path)) if within(name, forbidden)]


def test_the_engine_imports_nothing_from_vj():
    assert violations("engine", ["vj"]) == []


def test_the_preset_schema_imports_neither_the_live_show_nor_the_midi_port_code():
    assert violations("vj/preset", ["vj.live", "vj.control.midi"]) == []


def test_the_checker_sees_imports_of_every_form(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("import vj.live.show\nfrom ..control import midi\nfrom . import schema\n"
                    "def f():\n    from vj.live.scenes import LiveScenes\n    importlib.import_module('vj.x')\n")
    found = imported(path, "vj.preset.probe")
    assert {"vj.live.show", "vj.control.midi", "vj.preset.schema", "vj.live.scenes", "vj.x"} <= found
    assert within("vj.control.midi", ["vj.control.midi"]) and not within("vj.control.midi_keys", ["vj.control.midi"])


def test_the_shared_vocabulary_is_defined_once():
    defined = {}
    for path in [*sources("engine"), *sources("vj")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                       if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names = [node.name]
            for name in names:
                if name in VOCABULARY:
                    defined.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert defined == {name: [where] for name, where in VOCABULARY.items()}


def test_every_pytti_flag_is_a_preset_key():
    from engine.vocabulary import PYTTI_FLAGS
    from vj.preset.schema import FIELDS
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
    result = subprocess.run([sys.executable, "-c", CHECK_AND_SCHEMA, json.dumps([light, guided])], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0], result.stderr
    assert report["after_light"] == []
    assert not set(report["after_all"]) & {"pygame", "sounddevice", "mido"}
