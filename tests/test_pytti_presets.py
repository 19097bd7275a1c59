"""pytti's configs (tests/data/pytti, modelled on pytti-core's default.yaml, its test configs and the pytti-book
examples): each loads with the warnings that name what vj approximates, or is refused by one line saying what to
change; --strict refuses every approximation."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vj.config.loading import PresetError, load_preset

DATA = Path(__file__).parent / "data" / "pytti"


def problems(path, strict=False, overrides=None):
    with pytest.raises(PresetError) as info:
        load_preset(path, overrides, strict=strict)
    return info.value.problems


def joined(preset):
    return "\n".join(preset.warnings)


def test_a_copy_of_default_yaml_is_refused_only_for_its_missing_scenes():
    (problem,) = problems(DATA / "default.yaml")
    assert problem.endswith(":5: scenes: no scenes given (scenes: ??? is Hydra's 'missing' marker)")


def test_default_yaml_with_scenes_loads_as_pytti_would(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text((DATA / "default.yaml").read_text().replace("scenes: ???", "scenes: a forest || a city"))
    preset = load_preset(path)
    text = joined(preset)
    assert preset.image_model == "unlimited_palette" and (preset.width, preset.height) == (512, 512)
    # 100 steps per scene, 50 per frame, 12 fps: 1/6 s a scene; the first loses its 50 pre-animation steps
    assert preset.scene_durations() == pytest.approx((50 / 600, 100 / 600))
    assert preset.transition_time == 0 and preset.frames_per_second == 12 and preset.smoothing_weight({}) == 0.02
    assert "pre_animation_steps: 50 dropped: vj has no pre-animation phase" in text
    assert "Hydra's `defaults:` ignored" in text
    assert "asks for a random seed: this run uses seed " in text
    ignored = next(w for w in preset.warnings if "output and runtime settings ignored" in w)
    for name in (
        "file_namespace",
        "save_every",
        "display_every",
        "models_parent_dir",
        "device",
        "use_mmc",
        "backups",
        "use_tensorboard",
        "vqgan_model",
        "flow_long_term_samples",
    ):
        assert name in ignored, name
    assert len(preset.warnings) == 4, text  # Hydra, ignored keys, seed, pre-animation: no 3D, depth or flow one
    seed = int(text.split("uses seed ")[1].split(";")[0])
    assert preset.seed == seed


def test_an_overlay_takes_pyttis_defaults():
    preset = load_preset(DATA / "overlay.yaml")
    assert preset.image_model == "unlimited_palette" and preset.ViTB32 is True
    assert (preset.frames_per_second, preset.steps_per_frame, preset.infill_mode, preset.palettes) == (
        12,
        25,
        "wrap",
        20,
    )
    assert preset.scene_durations() == (2.0, 2.0) and preset.transition_time == 0.5  # 600 and 150 steps at 25·12
    (warning,) = preset.warnings
    assert warning == (
        "line 11: file_namespace: pytti's output and runtime settings ignored (they change nothing in the frames): "
        "file_namespace, save_every"
    )
    assert load_preset(DATA / "overlay.yaml", strict=True).warnings == preset.warnings


def test_a_plain_file_keeps_vjs_defaults_but_pyttis_rate_for_pyttis_steps(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("scenes: a\nsteps_per_scene: 240\n")
    preset = load_preset(path)
    assert preset.image_model == "diffusion" and preset.frames_per_second == 12
    assert preset.scene_durations() == (0.4,)  # 240 / 50 / 12
    assert preset.warnings == (
        "line 2: steps_per_scene: counted in pytti's steps without frames_per_second: pytti's 12 fps is used "
        "(vj's default is 24)",
    )
    path.write_text("scenes: a\nsteps_per_scene: 240\nframes_per_second: 24\n")
    preset = load_preset(path)
    assert preset.frames_per_second == 24 and preset.scene_durations() == (0.2,) and preset.warnings == ()


def test_hydra_scaffolding_and_a_random_seed():
    first, second = load_preset(DATA / "hydra.yaml"), load_preset(DATA / "hydra.yaml")
    assert first.image_model == "unlimited_palette"  # `defaults:` makes it an overlay
    assert any("Hydra's `defaults:` and `hydra:` ignored" in w for w in first.warnings)
    assert any(f"write `seed: {first.seed}` to repeat it" in w for w in first.warnings)
    assert isinstance(first.seed, int) and isinstance(second.seed, int)


def test_a_null_seed_is_random(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("scenes: a\nseed: null\n")
    preset = load_preset(path)
    assert f"seed: `null` asks for a random seed: this run uses seed {preset.seed}" in joined(preset)


def test_vqgan_is_rendered_by_unlimited_palette():
    preset = load_preset(DATA / "vqgan.yaml")
    (warning,) = preset.warnings
    assert warning.startswith(
        "line 2: image_model: VQGAN is not supported by vj (no VQGAN weights or code): rendered by unlimited_palette"
    )
    assert "vqgan_model imagenet ignored" in warning and "learning_rate 0.1" in warning
    assert preset.image_model == "unlimited_palette" and preset.learning_rate is None
    assert preset.scene_durations() == (1.0,) and preset.animation_mode == "2D"


def test_empty_weights_are_zero_and_a_negative_seed_is_kept():
    preset = load_preset(DATA / "empty_weights.yaml")
    assert preset.warnings == ()
    assert preset.seed == -4854551145582748953
    for name in ("direct_init_weight", "semantic_stabilization_weight", "translate_x", "smoothing_weight"):
        assert getattr(preset, name)({}) == 0, name


@pytest.mark.parametrize(
    "seed, expected",
    [(2**63 + 5, -(2**63) + 5), (2**64 + 7, 7), (-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1)],
)
def test_every_integer_seed_is_one_torch_takes(tmp_path, seed, expected):
    import torch

    path = tmp_path / "p.yaml"
    path.write_text(f"scenes: a\nseed: {seed}\n")
    preset = load_preset(path)
    assert preset.seed == expected
    torch.Generator().manual_seed(preset.seed + 1000)  # seed + frame, as the engines do


def test_a_seed_that_is_not_an_integer_is_printed_as_written(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("scenes: a\nseed: 1.5\n")
    (problem,) = problems(path)
    assert problem.endswith(":2: seed: expected an integer, got 1.5")


def test_width_180_is_rounded():
    preset = load_preset(DATA / "width180.yaml")
    assert (preset.width, preset.height) == (184, 112)
    assert preset.warnings == ("line 3: width: 180 is not a multiple of 8: vj renders 184 (the nearest multiple of 8)",)
    (problem,) = problems(DATA / "width180.yaml", strict=True)
    assert problem.endswith(
        ":3: width: must be a multiple of 8, got 180: use 176 or 184 (--strict refuses substitutions)"
    )


def test_depth_flow_and_3d_keys():
    preset = load_preset(DATA / "stabilized.yaml")
    assert preset.warnings == (
        "line 5: flow_stabilization_weight: flow_stabilization_weight not implemented (no optical-flow model in "
        "vj): left out; direct, semantic, edge and depth stabilization work",
        "line 4: depth_stabilization_weight: depth estimated by Depth Anything V2 small (vj's depth_model), not "
        "pytti's AdaBins: the same motion, another depth estimate; set depth_model to choose the model",
        "line 6: translate_z_3d: translate_z_3d, rotate_3d ignored: pytti uses them only with animation_mode: 3D",
    )
    assert preset.depth_stabilization_weight(None) == 0.3
    depth, flow = problems(DATA / "stabilized.yaml", strict=True)  # the 3D keys change nothing outside 3D mode
    assert ":4: depth_stabilization_weight: vj estimates depth with a transformers model" in depth
    assert ":5: flow_stabilization_weight: flow_stabilization_weight not implemented" in flow


def test_3d_mode_loads():
    (warning,) = load_preset(DATA / "mode3d.yaml").warnings
    assert warning.startswith("line 2: animation_mode: depth estimated by Depth Anything V2 small")
    (problem,) = problems(DATA / "mode3d.yaml", strict=True)
    assert problem.endswith(
        ":2: animation_mode: vj estimates depth with a transformers model, not pytti's AdaBins; "
        "set depth_model to accept that (--strict refuses substitutions)"
    )
    assert load_preset(DATA / "mode3d.yaml", {"depth_model": "tiny"}, strict=True).warnings == ()


def test_semantic_masks_load():
    preset = load_preset(DATA / "semantic_mask.yaml")  # pytti's semantic text mask: tests/test_semantic_masks.py
    mask = preset.scenes[0].prompts[0].mask
    assert (mask.kind, mask.value, mask.cutoff) == ("semantic", "sky", None) and preset.warnings == ()


@pytest.mark.parametrize(
    "name, fragment",
    [
        (
            "vqgan.yaml",
            ":2: image_model: VQGAN is not supported by vj (no VQGAN weights or code); use unlimited_palette",
        ),
        ("width180.yaml", ":3: width: must be a multiple of 8, got 180"),
        ("stabilized.yaml", ":5: flow_stabilization_weight:"),
        ("hydra.yaml", ":11: pre_animation_steps:"),
    ],
)
def test_strict_refuses_each_substitution(tmp_path, name, fragment):
    path = DATA / name
    if name == "hydra.yaml":
        path = tmp_path / name
        path.write_text((DATA / name).read_text().replace("pre_animation_steps: 0", "pre_animation_steps: 20"))
    found = problems(path, strict=True)
    assert any(fragment in p and p.endswith("(--strict refuses substitutions)") for p in found), found


def test_unknown_keys_list_the_valid_keys_once_and_suggest_only_near_spellings():
    found = problems(DATA / "unknown_keys.yaml")
    assert sum("valid preset keys:" in p for p in found) == 1
    assert found[0].endswith(":2: widht: unknown key (did you mean 'width'?); " + found[0].split("; ", 1)[1])
    assert found[2].endswith(":4: steps_per_scen: unknown key (did you mean pytti's 'steps_per_scene'?)")
    assert not any("steps_per_frame" in p.split("; valid")[0] or "transition_steps" in p for p in found[1:])


def test_an_explicit_vj_key_wins_over_the_pytti_one():
    preset = load_preset(DATA / "both_timings.yaml")
    assert preset.scene_durations() == (8.0, 8.0) and preset.transition_time == 2
    assert preset.warnings == (
        "line 3: scene_duration: given with pytti's steps_per_scene (= 2 s): scene_duration is used",
        "line 5: transition_time: given with pytti's interpolation_steps (= 1 s): transition_time is used",
    )


def test_hydra_missing_and_interpolated_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("scenes: a\nwidth: ???\nmodel: ${oc.env:MODEL}\n")
    assert problems(path) == [
        f"{path}:2: width: ??? is Hydra's 'missing' marker: give a value",
        f"{path}:3: model: Hydra interpolation '${{oc.env:MODEL}}' is not resolved by vj; write the value",
    ]


def test_vj_check_strict_on_the_command_line():
    def check(*args):
        return subprocess.run([sys.executable, "-m", "vj", "check", *args], capture_output=True, text=True)

    result = check(str(DATA / "vqgan.yaml"))
    assert result.returncode == 0 and "warning: line 2: image_model: VQGAN is not supported" in result.stdout
    result = check("--strict", str(DATA / "vqgan.yaml"))
    assert result.returncode == 1 and "(--strict refuses substitutions)" in result.stderr
    result = check(str(DATA / "empty_weights.yaml"))
    assert result.returncode == 0 and "e+18" not in result.stdout + result.stderr
    assert shutil.which(sys.executable)
