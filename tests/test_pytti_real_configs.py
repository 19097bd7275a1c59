"""Real pytti configs written by other people (tests/data/pytti/real, sources in SOURCES.md there): pytti-core's
default, demo and test configs, pytti-book's tutorials and widgets, pytti-notebook, pytti-docker, forks and GUI apps.
Each either loads (warnings allowed, each one line naming what vj substitutes) or is refused by one line per problem
that names the file, a key or line, and what to change. The tables below say which, and why: a change in either
direction fails. `animation_mode: 3D` and pytti's semantic text masks are expected to load (vj issue 19)."""

import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from conftest import run_vj
from video_codes import write_coded_video
from vj.config.loading import PresetError, load_preset

DATA = Path(__file__).parent / "data" / "pytti" / "real"
FILES = sorted(p.name for p in DATA.glob("*.yaml"))
STRICT = "(--strict refuses substitutions)"

# Refused as published: fragments that the problems must contain (file:line: key: what is wrong / what to change).
REFUSED = {
    # the author's video, absolute paths on their machine
    "book_rotoscoping_reencode_flow_long_direct10.yaml": (
        ":3: video_path: video file '/home/dmarx/proj/pytti-book/lfb_trimmed2.mp4' not found",
    ),
    "book_rotoscoping_spring2winter.yaml": (
        ":3: video_path: video file '/home/dmarx/proj/pytti-book/lfb_trimmed2.mp4' not found",
    ),
    "book_widget_video_source_stability.yaml": (
        ":5: video_path: video file '/home/dmarx/proj/pytti-book/pytti-core/src/pytti/assets/HebyMorgongava_512kb.mp4'"
        " not found",
    ),
    "core_cblfb_audio_input_test.yaml": (
        ":3: video_path: video file '/home/dmarx/proj/pytti-book/reefer_madness.mp4'",
    ),
    # the author's init image, relative to the config
    "book_widget_vqgans_and_perceptors.yaml": (":27: init_image: image file ", "GasWorksPark3.jpg' not found"),
    # pytti's base configs: `scenes: ???` is filled by an overlay (conf=...)
    "core_default.yaml": (":13: scenes: no scenes given",),
    "core_default_2022_03_vqgan.yaml": (":14: scenes: no scenes given",),
    "docker_default.yaml": (":14: scenes: no scenes given",),
    "notebook_default.yaml": (":55: scenes: no scenes given",),
    "portable_empty.yaml": ("portable_empty.yaml: scenes: no scenes given",),  # an overlay with no keys at all
    # pytti refuses these too
    "core_test_invalid_animation.yaml": (":3: animation_mode: must be one of off, 2D, 3D, Video Source, got '1D'",),
    "book_settings_audio_reactivity.yaml": ("YAML syntax error",),  # `scenes:"` (no space) as published
    # keys pytti does not have (its spelling differs, a Hydra config group, or a fork's own keys)
    "book_widget_limited_palette.yaml": (":18: ViT-B/32: unknown key (did you mean 'ViTB32'?)",),
    "book_usage_zoom_out_spinning.yaml": (
        ":3: translate_z_3D: unknown key (did you mean 'translate_z_3d'?)",
        ":4: rotate_2D: unknown key (did you mean 'rotate_2d'?)",
        "scenes: ",
    ),
    "book_usage_experiment1_motion.yaml": (":3: motion: unknown key",),
    "fork_somnai_test_coarse_to_fine.yaml": (":26: perceptor_backend: unknown key", ":27: coarse_to_fine: unknown key"),
    "gui_pytti_able_default.yaml": (":20: config_version: unknown key", ":114: perceptor_backend: unknown key"),
    "portable_default.yaml": (":141: breath_mode: unknown key",),
    "fork_takyon_high_quality_3d.yaml": (
        ":5: image_model: must be one of diffusion, unlimited_palette, limited_palette, got 'Stable Diffusion XL'",
        ":6: diffusion_model_id: unknown key",
        ":51: scenes: no scenes",
    ),
}

# Loaded as published: image model, animation mode, fragments of its warnings, and fragments of what --strict
# refuses (None: --strict loads it too).
LOADS = {
    "book_crashcourse_my_first_pytti_art.yaml": (
        "unlimited_palette",
        "off",
        ("pre_animation_steps: 50 dropped", "output and runtime settings ignored"),
        ("pre_animation_steps: 50: vj has no pre-animation phase; set pre_animation_steps: 0",),
    ),
    "book_crashcourse_my_first_pytti_art3.yaml": (
        "unlimited_palette",
        "off",
        ("pre_animation_steps: 50 dropped",),
        ("pre_animation_steps: 50: vj has no pre-animation phase",),
    ),
    "core_test_limited_palette.yaml": (
        "limited_palette",
        "off",
        ("line 4: pre_animation_steps: 2 dropped",),
        (":4: pre_animation_steps: 2: vj has no pre-animation phase",),
    ),
    "core_test_valid_animation.yaml": (
        "unlimited_palette",
        "2D",
        ("pre_animation_steps: 50 dropped",),
        ("pre_animation_steps: 50: vj has no pre-animation phase",),
    ),
    "core_test_mmc_openai.yaml": (
        "unlimited_palette",
        "off",
        ("mmc_models",),
        ("pre_animation_steps: 50: vj has no pre-animation phase",),
    ),
    "fork_somnai_golden_lp_still.yaml": (
        "limited_palette",
        "off",
        ("line 30: pre_animation_steps: 50 dropped",),
        (":30: pre_animation_steps: 50",),
    ),
    "fork_somnai_golden_vqgan_still.yaml": (
        "unlimited_palette",
        "off",
        (
            "line 15: image_model: VQGAN is not supported by vj",
            "vqgan_model sflickr ignored",
            "pre_animation_steps: 50",
        ),
        (":15: image_model: VQGAN is not supported by vj", ":25: pre_animation_steps: 50"),
    ),
    # 3D and semantic masks (`neon:3_galactic nebula`): expected to load once vj has them
    "core_demo.yaml": ("limited_palette", "3D", ("pre_animation_steps: 2 dropped",), (":11: pre_animation_steps: 2",)),
    "docker_demo.yaml": ("limited_palette", "3D", ("pre_animation_steps: 50 dropped",), ("pre_animation_steps: 50",)),
    "portable_prompting_3d.yaml": (
        "limited_palette",
        "3D",
        ("line 12: pre_animation_steps: 160 dropped",),
        (":12: pre_animation_steps: 160",),
    ),
    # the author's track is missing: a warning that --audio resolves, not an approximation; 3D's depth model is one
    "portable_prompting_audio.yaml": (
        "unlimited_palette",
        "3D",
        ("input_audio: audio file ", "--audio TRACK", "depth estimated by Depth Anything"),
        (":5: animation_mode: vj estimates depth",),
    ),
}

THREE_D = {"core_demo.yaml", "docker_demo.yaml", "portable_prompting_3d.yaml", "portable_prompting_audio.yaml"}

REPR = re.compile(r"Traceback|\b\w+(Error|Exception|Warning)\(|<class |<function |object at 0x")


def one_clean_line(message):
    assert "\n" not in message and "\r" not in message, message
    assert not REPR.search(message), message


def refused(path, overrides=None, strict=False):
    with pytest.raises(PresetError) as info:
        load_preset(path, overrides, strict=strict)
    problems = info.value.problems
    assert problems
    for problem in problems:
        one_clean_line(problem)
        # the file, then a line number or a key
        assert re.match(re.escape(str(path)) + r"(:\d+: |: \S+: )", problem), problem
    return problems


def check_warnings(preset):
    for warning in preset.warnings:
        one_clean_line(warning)
    assert len(set(preset.warnings)) == len(preset.warnings), preset.warnings  # one warning per substitution


def has(found, fragment):
    return any(fragment in line for line in found)


def test_the_folder_holds_at_least_15_configs_and_every_one_is_in_a_table():
    assert len(FILES) >= 15
    assert not set(REFUSED) & set(LOADS)
    assert set(FILES) == set(REFUSED) | set(LOADS), set(FILES) ^ (set(REFUSED) | set(LOADS))
    sources = (DATA / "SOURCES.md").read_text()
    for name in FILES:
        assert name in sources, name


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_config_says_what_to_change_in_one_line_per_problem(name):
    problems = refused(DATA / name)
    for fragment in REFUSED[name]:
        assert has(problems, fragment), (fragment, problems)
    assert sum("valid preset keys:" in p for p in problems) <= 1  # the key list once per file
    refused(DATA / name, strict=True)  # --strict refuses it too, with the same kind of lines


@pytest.mark.parametrize("name", sorted(LOADS))
def test_a_loaded_config_warns_once_per_substitution(name):
    image_model, mode, fragments, _ = LOADS[name]
    preset = load_preset(DATA / name)
    check_warnings(preset)
    assert (preset.image_model, preset.animation_mode) == (image_model, mode)
    for fragment in fragments:
        assert has(preset.warnings, fragment), (fragment, preset.warnings)


@pytest.mark.parametrize("name", sorted(LOADS))
def test_strict_refuses_every_approximation(name):
    expected = LOADS[name][3]
    if expected is None:
        preset = load_preset(DATA / name, strict=True)
        assert not any("dropped" in w or "rendered by" in w or "not a multiple" in w for w in preset.warnings)
        return
    problems = refused(DATA / name, strict=True)
    for fragment in expected:
        assert any(fragment in p and p.endswith(STRICT) for p in problems), (fragment, problems)


def test_3d_configs_keep_their_camera_and_the_demo_its_semantic_mask():
    demo = load_preset(DATA / "core_demo.yaml")
    assert demo.seed == -4854551145582748953 and demo.lock_camera is True
    prompts = {p.text: p for p in demo.scenes[0].prompts}
    mask = prompts["space full of cybernetic neon"].mask
    assert (mask.kind, mask.value) == ("semantic", "galactic nebula")
    portable = load_preset(DATA / "portable_prompting_3d.yaml")
    assert portable.lock_camera is False and (portable.width, portable.height) == (640, 384)
    assert len(portable.scenes) == 3 and portable.frames_per_second == 15
    for name in THREE_D:
        preset = load_preset(DATA / name)
        assert preset.animation_mode == "3D"
        assert not has(preset.warnings, "3D is not implemented"), preset.warnings


def test_the_docker_demo_takes_a_url_image_prompt_without_downloading_it():
    preset = load_preset(DATA / "docker_demo.yaml")
    (prompt,) = preset.direct_image_prompts
    assert prompt.is_image and "https://i.imgur.com/frXoHJ6.jpg" in prompt.text


@pytest.fixture
def track(tmp_path):
    path = tmp_path / "track.wav"
    soundfile.write(str(path), np.zeros(24000, np.float32), 48000)
    return path


@pytest.fixture
def video(tmp_path):
    return write_coded_video(tmp_path / "clip.mp4", 12, fps=12, width=64, height=64)


SCENES = {"scenes": "a forest at dawn || a neon city"}


@pytest.mark.parametrize(
    "name, given, mode, fragments, strict",
    [
        (
            "core_default.yaml",
            "scenes",
            "off",
            ("Hydra's `defaults:` ignored", "asks for a random seed: this run uses seed", "pre_animation_steps: 50"),
            (":93: pre_animation_steps: 50",),
        ),
        (
            "core_default_2022_03_vqgan.yaml",
            "scenes",
            "off",
            ("line 25: image_model: VQGAN is not supported", "line 31: width: 180 is not a multiple of 8"),
            (":25: image_model: VQGAN", ":31: width: must be a multiple of 8, got 180", ":72: pre_animation_steps"),
        ),
        (
            "docker_default.yaml",  # 3D
            "scenes",
            "3D",
            ("line 66: rotate_2d: rotate_2d ignored", "width: 180 is not a multiple of 8"),
            (":31: width: must be a multiple of 8, got 180", ":72: pre_animation_steps: 100"),
        ),
        (
            "notebook_default.yaml",
            "scenes",
            "off",
            ("width: 180 is not a multiple of 8", "pre_animation_steps: 100 dropped"),
            (":85: width: must be a multiple of 8", ":126: pre_animation_steps: 100"),
        ),
        ("portable_empty.yaml", "scenes", "off", ("pre_animation_steps: 50 dropped",), ("pre_animation_steps: 50",)),
        (
            "book_rotoscoping_spring2winter.yaml",
            "video",
            "Video Source",
            ("line 7: image_model: VQGAN is not supported", "pre_animation_steps: 50 dropped"),
            (":7: image_model: VQGAN", "pre_animation_steps: 50"),
        ),
        (
            "book_rotoscoping_reencode_flow_long_direct10.yaml",
            "video",
            "Video Source",
            ("line 5: image_model: VQGAN", "line 25: flow_stabilization_weight: flow_stabilization_weight not"),
            (":5: image_model: VQGAN", ":25: flow_stabilization_weight:"),
        ),
        (
            "book_widget_video_source_stability.yaml",
            "video",
            "Video Source",
            ("line 13: image_model: VQGAN",),
            (":13: image_model: VQGAN",),
        ),
        (
            "core_cblfb_audio_input_test.yaml",
            "video and track",
            "Video Source",
            ("line 13: image_model: VQGAN", "width: 100 is not a multiple of 8", "flow_stabilization_weight"),
            (":13: image_model: VQGAN", ":20: width: must be a multiple of 8", ":88: flow_stabilization_weight"),
        ),
        (
            "book_widget_vqgans_and_perceptors.yaml",
            "init image",
            "2D",
            ("line 31: image_model: VQGAN is not supported",),
            (":31: image_model: VQGAN",),
        ),
        (
            "portable_prompting_audio.yaml",
            "track",
            "3D",
            ("depth estimated by Depth Anything",),
            (":5: animation_mode: vj estimates depth",),
        ),
    ],
)
def test_a_config_loads_once_its_missing_pieces_are_given(tmp_path, track, video, name, given, mode, fragments, strict):
    path, overrides = DATA / name, {}
    if "scenes" in given:
        overrides.update(SCENES)
    if "video" in given:
        overrides["video_path"] = str(video)
    if "track" in given:
        overrides["input_audio"] = str(track)
    if given == "init image":  # the author's picture beside the config, where it names it
        path = tmp_path / name
        shutil.copy(DATA / name, path)
        Image.new("RGB", (64, 48), (40, 90, 160)).save(tmp_path / "GasWorksPark3.jpg")
    preset = load_preset(path, overrides)
    check_warnings(preset)
    assert preset.animation_mode == mode
    for fragment in fragments:
        assert has(preset.warnings, fragment), (fragment, preset.warnings)
    assert not has(preset.warnings, "not found"), preset.warnings
    if strict is None:
        assert load_preset(path, overrides, strict=True).warnings == preset.warnings == ()
        return
    problems = refused(path, overrides, strict=True)
    for fragment in strict:
        assert any(fragment in p and p.endswith(STRICT) for p in problems), (fragment, problems)


def test_the_missing_track_of_a_shared_preset_is_one_warning_naming_it():
    preset = load_preset(DATA / "portable_prompting_audio.yaml")
    (warning,) = [w for w in preset.warnings if "input_audio" in w]
    assert "C:\\music\\track.wav' is a Windows path" in warning and "--audio TRACK" in warning


def test_pyttis_random_seed_is_named_so_it_can_be_written_in():
    preset = load_preset(DATA / "core_default.yaml", SCENES)
    assert f"write `seed: {preset.seed}` to repeat it" in "\n".join(preset.warnings)


# Short real renders: the tiny model and perceptor (and depth model), 64x64, on the CPU, 1-2 frames.
RENDERS = [
    ("core_test_limited_palette.yaml", "4", "0.5", 2),  # pytti-core's own test config: Limited Palette
    ("fork_somnai_golden_vqgan_still.yaml", "4", "0.25", 1),  # VQGAN, rendered by Unlimited Palette
    ("core_demo.yaml", "4", "0.5", 2),  # 3D and a semantic mask (pytti-core's demo)
]


@pytest.mark.parametrize("name, fps, duration, frames", RENDERS)
def test_a_real_config_renders_a_decodable_mp4(tmp_path, name, fps, duration, frames):
    out = tmp_path / "out.mp4"
    args = ["render", DATA / name, "-o", out, "--model", "tiny", "--width", "64", "--height", "64"]
    result = run_vj(*args, "--fps", fps, "--duration", duration, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stderr.splitlines():
        if "warning:" in line:
            one_clean_line(line)
    with av.open(str(out)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == frames
    assert all(p.shape == (64, 64, 3) for p in pictures)
    assert pictures[-1].std() > 0  # a picture, not a blank frame


# A suggestion must be a near spelling of the key it names, and an absolute path is not "relative to the preset".
def test_a_suggestion_is_never_a_different_keys_name():
    problems = refused(DATA / "portable_default.yaml") + refused(DATA / "fork_takyon_high_quality_3d.yaml")
    assert not has(problems, "breath_mode: unknown key (did you mean")
    assert not has(problems, "compile_models: unknown key (did you mean")
    assert not has(problems, "depth_model_size: unknown key (did you mean")
    assert has(refused(DATA / "book_widget_limited_palette.yaml"), "ViT-B/32: unknown key (did you mean 'ViTB32'?)")


def test_an_absolute_path_is_not_called_relative():
    (problem,) = refused(DATA / "core_cblfb_audio_input_test.yaml")
    assert "(relative to the preset, in" not in problem and "not found: give a path" in problem
