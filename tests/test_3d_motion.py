"""pytti's 3D animation (issue 19): the geometry against an independent 4x4-matrix reconstruction of pytti's
`zoom_3d` (GLM's perspective, translate and quaternion cast), the warp's directions, lock_camera, the depth
variables r/R/mu, the keys, and frames rendered in 3D mode by both engines with a tiny depth model."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from conftest import problems, write
from vj.config.loading import load_preset
from vj.engine.depth.camera import (
    Camera,
    DepthWarp,
    Motion3D,
    depth_statistics,
    depth_units,
    flow_3d,
    quaternion_matrix,
    warp_3d,
)
from vj.engine.motion import Motion
from vj.show.director import Director


# --- pytti's matrices, rebuilt as GLM builds them (column vectors, full 4x4 with the projection's planes) ---------


def glm_perspective(fovy, aspect, near, far):
    t = math.tan(fovy / 2)
    p = np.zeros((4, 4))
    p[0, 0], p[1, 1] = 1 / (aspect * t), 1 / t
    p[2, 2], p[2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
    p[3, 2] = -1
    return p


def glm_quaternion(w, x, y, z):
    m = np.eye(4)
    m[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return m


def pytti_offset(depth, motion, camera):
    """Per pixel, ndc(P·R·T·v) − ndc(P·v) with v = (x, y, −D, 1), as pytti's render_image_3d computes it."""
    h, w = depth.shape
    px = 2 / camera.height
    aspect = w / h
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-aspect, aspect, w), indexing="ij")
    v = np.stack([x, y, -depth, np.ones_like(x)], axis=-1)[..., None]
    p = glm_perspective(math.radians(camera.field_of_view), aspect, 0.1, 4)
    t = np.eye(4)
    t[:3, 3] = motion.translate_x * px, -motion.translate_y * px, motion.translate_z * px
    m = glm_quaternion(*motion.rotation) @ t
    before, after = (p @ v)[..., 0], (p @ m @ v)[..., 0]
    offset = after[..., :2] / after[..., 3:] - before[..., :2] / before[..., 3:]
    if camera.lock_camera:
        offset = offset - offset.mean(axis=(0, 1))
    return offset


@pytest.mark.parametrize(
    "motion",
    [
        Motion3D(translate_z=3.0),  # every point stays in front of the camera (depth >= 0.3 > 3 px)
        Motion3D(translate_x=7.0, translate_y=-3.0),
        Motion3D(rotation=(math.cos(0.05), 0.0, math.sin(0.05), 0.0)),
        Motion3D(2.0, 1.0, 2.0, (0.99, 0.02, -0.03, 0.05)),
        Motion3D(rotation=(1.2, 0.1, 0.0, 0.0)),  # not normalised: applied as written
    ],
)
@pytest.mark.parametrize("lock", [False, True])
def test_the_flow_is_pyttis_matrices(motion, lock):
    camera = Camera(field_of_view=50, lock_camera=lock, height=24)
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 3.0, (24, 32))
    ours = flow_3d(torch.tensor(depth, dtype=torch.float32)[None, None], motion, camera)[0].double().numpy()
    np.testing.assert_allclose(ours, pytti_offset(depth, motion, camera), atol=2e-5)


def test_the_quaternion_is_glms_cast_and_a_rotation_when_unit():
    q = np.array([0.3, -0.5, 0.2, 0.7])
    q /= np.linalg.norm(q)
    expected = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
    np.testing.assert_allclose(quaternion_matrix(*q).numpy(), expected, atol=1e-6)
    half = 0.1  # pytti's demo writes [cos a, sin a, 0, 0]: a turn of 2a about x
    turn = quaternion_matrix(math.cos(half), math.sin(half), 0, 0).numpy()
    np.testing.assert_allclose(turn[1:, 1:], [[math.cos(0.2), -math.sin(0.2)], [math.sin(0.2), math.cos(0.2)]], 1e-6)


def sampled_from(motion, size=33):
    """Where each output pixel's content came from: (rows, cols) of the input, read off coordinate pictures."""
    rows, cols = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    image = torch.stack((rows, cols))[None]
    camera = Camera(lock_camera=False, height=size)
    moved = warp_3d(image, torch.full((1, 1, size, size), 2.0), motion, camera, "smear", "bilinear")
    return moved[0, 0] - rows, moved[0, 1] - cols  # how far back along each axis the content comes from


def test_directions_are_pyttis():
    inner = (slice(8, 25), slice(8, 25))  # away from the edges' infill
    assert all(d[inner].abs().max() < 1e-4 for d in sampled_from(Motion3D()))
    rows, cols = sampled_from(Motion3D(translate_x=6))
    assert (cols[inner] < -1).all() and rows[inner].abs().max() < 1e-4  # +x: content moves right
    rows, cols = sampled_from(Motion3D(translate_y=6))
    assert (rows[inner] > 1).all() and cols[inner].abs().max() < 1e-4  # +y: content moves up, as pytti
    rows, cols = sampled_from(Motion3D(translate_z=8))
    below, right = rows[20:25, 14:19], cols[14:19, 20:25]
    assert (below < 0).all() and (right < 0).all()  # +z flies in: content moves out from the centre
    assert (rows[8:13, 14:19] > 0).all() and (cols[14:19, 8:13] > 0).all()


def test_lock_camera_keeps_only_parallax():
    flat = torch.full((1, 1, 20, 20), 2.0)
    locked, free = Camera(lock_camera=True, height=20), Camera(lock_camera=False, height=20)
    slide = Motion3D(translate_x=5)
    assert flow_3d(flat, slide, locked).abs().max() < 1e-6  # a flat picture slid sideways does not move at all
    assert flow_3d(flat, slide, free)[..., 0].abs().min() > 0.01
    steps = flat.clone()
    steps[..., :, :10] = 0.5  # the left half much nearer
    offset = flow_3d(steps, slide, locked)[0, ..., 0]
    assert (offset[:, :10] > 0).all() and (offset[:, 10:] < 0).all()  # near moves past far


def test_a_camera_flying_through_the_picture_gives_no_nan():
    image = torch.rand(1, 3, 16, 16)
    out = warp_3d(image, torch.full((1, 1, 16, 16), 0.01), Motion3D(translate_z=1e4), Camera(height=16))
    assert torch.isfinite(out).all()


def test_depth_units_and_statistics_are_pyttis():
    camera = Camera(near_plane=2, far_plane=400, height=100)  # px = 0.02
    metres = torch.tensor([[[[1e-4, 1e-3, 10.0, 50.0]]]])
    units = depth_units(metres, camera)
    np.testing.assert_allclose(units.flatten().numpy(), [0.04, 0.04, 8.0, 8.0], rtol=1e-6)
    r, big_r, mu = depth_statistics(torch.tensor([1.0, 2.0, 3.0, 10.0]) * 0.02, camera)
    # mean 4, median 2.5 (torch takes the lower middle value: 2)
    assert (r, big_r) == pytest.approx((1.0, 10.0)) and mu == pytest.approx((4.0 + 2.0) / 2)


def test_the_depth_warp_passes_2d_motion_on_and_resolves_depth_terms():
    calls = []

    def metres(image):
        calls.append(image.shape)
        return torch.full((1, 1, *image.shape[-2:]), 5.0)

    warp = DepthWarp(metres, Camera(lock_camera=False, height=16))
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(warp(image, Motion()), image) and not calls  # 2D: no depth needed
    assert torch.equal(warp(image, Motion3D()), image) and not calls
    seen = []

    def terms(r, big_r, mu):
        seen.append((r, big_r, mu))
        return Motion3D(translate_z=mu / 10)

    warp(image, Motion3D(depth_terms=terms))
    assert calls and seen[0][0] == pytest.approx(seen[0][1])  # a constant depth: nearest = farthest
    assert seen[0][2] > 0 and warp.depth.shape == (1, 1, 16, 16)


# --- keys and the Director ------------------------------------------------------------------------------------


def preset3d(tmp_path, extra=""):
    return load_preset(
        write(tmp_path, f"scenes: a forest\nmodel: tiny\nwidth: 64\nheight: 64\nanimation_mode: 3D\n{extra}")
    )


def test_3d_keys_load_with_pyttis_spellings_and_defaults(tmp_path):
    preset = preset3d(tmp_path, "translate_z_3d: '10*t'\nrotate_3d: '[cos(t), sin(t), 0, 0]'\nfield_of_view: 42\n")
    assert preset.animation_mode == "3D" and preset.field_of_view == 42 and preset.lock_camera is True
    assert (preset.near_plane, preset.far_plane) == (1, 10000)
    assert [q.source for q in preset.rotate_3d] == ["cos(t)", "sin(t)", "0", "0"]
    listed = preset3d(tmp_path, "rotate_3d: [1, 0, 0.1, 0]\n")
    assert [q(None) for q in listed.rotate_3d] == [1, 0, 0.1, 0]
    assert load_preset(write(tmp_path, "scenes: a\nanimation_mode: 3d\n")).animation_mode == "3D"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("rotate_3d: '[1, 0, 0]'\n", "rotate_3d: expected pytti's quaternion '[w, x, y, z]'"),
        ("rotate_3d: 4\n", "rotate_3d: expected pytti's quaternion"),
        ("rotate_3d: '[1, 0, 0, nope]'\n", "rotate_3d: "),
        ("field_of_view: 180\n", "field_of_view: "),
        ("near_plane: 0\n", "near_plane: must be > 0"),
    ],
)
def test_bad_3d_keys_are_one_line_each(tmp_path, extra, message):
    (problem,) = problems(write(tmp_path, f"scenes: a\nanimation_mode: 3D\n{extra}"))
    assert message in problem and "\n" not in problem and problem.startswith(str(tmp_path))


def test_depth_variables_exist_only_in_3d_mode(tmp_path):
    assert preset3d(tmp_path, "translate_z_3d: mu/20\ntranslate_x: (R-r)/100\n").translate_z_3d.source == "mu/20"
    (problem,) = problems(write(tmp_path, "scenes: a\ntranslate_x: mu/20\n"))
    assert "translate_x" in problem and "mu" in problem


def test_keys_the_mode_does_not_use_are_named_once(tmp_path):
    two_d_in_3d = preset3d(tmp_path, "rotate_2d: 3\nzoom_x_2d: 2\n")
    (warning,) = [w for w in two_d_in_3d.warnings if "ignored" in w]
    assert "rotate_2d, zoom_x_2d ignored: pytti uses them only in 2D mode" in warning
    three_d_in_2d = load_preset(write(tmp_path, "scenes: a\ntranslate_z_3d: 5\nfield_of_view: 30\n"))
    (warning,) = three_d_in_2d.warnings
    assert "translate_z_3d, field_of_view ignored: pytti uses them only with animation_mode: 3D" in warning


def test_the_director_gives_3d_motion_in_3d_mode_and_2d_otherwise(tmp_path):
    preset = preset3d(tmp_path, "translate_x: 2\ntranslate_y: 3\ntranslate_z_3d: 4*t\nrotate_3d: '[1, 0, t, 0]'\n")
    motion = Director(preset).request(0, 0.5, {}).motion
    assert motion == Motion3D(2.0, 3.0, 2.0, (1.0, 0.0, 0.5, 0.0))
    flat = load_preset(write(tmp_path, "scenes: a\ntranslate_x: 2\ntranslate_y: 3\nrotate_2d: 1\n"))
    assert Director(flat).request(0, 0.5, {}).motion == Motion(2.0, -3.0, 1.0)  # pytti's +y is up: Motion's is down


def test_depth_variables_reach_the_engine_as_a_function(tmp_path):
    preset = preset3d(tmp_path, "translate_z_3d: mu/10 + t\nrotate_3d: '[1, 0, 0, 1e9]'\n")
    motion = Director(preset).request(0, 2.0, {}).motion
    resolved = motion.depth_terms(1.0, 50.0, 30.0)
    assert resolved.translate_z == pytest.approx(5.0) and resolved.rotation[3] == 100.0  # held to its range
    assert not motion.is_identity


def test_2d_translate_y_moves_the_picture_up_as_pytti(tmp_path):
    from vj.engine.motion import warp

    preset = load_preset(write(tmp_path, "scenes: a\ntranslate_y: 2\n"))
    image = torch.zeros(1, 1, 33, 33)
    image[0, 0, 22, 16] = 1.0
    moved = warp(image, Director(preset).request(0, 0.0, {}).motion, "black", "nearest")
    assert [tuple(p) for p in (moved[0, 0] > 0.5).nonzero().tolist()] == [(20, 16)]


# --- the engines ----------------------------------------------------------------------------------------------


def test_a_3d_frame_is_diffusers_img2img_of_the_previous_frame_moved_by_its_depth(model):
    """The diffusion engine in 3D mode: frame 2's input is frame 1 moved by the depth model's depth of frame 1,
    and the frame is exactly diffusers' Img2Img pipeline on that input."""
    from diffusers import StableDiffusionImg2ImgPipeline

    from test_engine import pipeline
    from vj.engine.depth.models import load_depth_model
    from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest

    depth = load_depth_model("tiny", "cpu")
    camera = Camera(field_of_view=55, lock_camera=False, height=64)
    engine = FrameEngine(model, EngineSettings(width=64, height=64, steps=1, infill_mode="smear"))
    engine.warp = DepthWarp(lambda image: depth.metres(image / 2 + 0.5), camera)
    engine.render_tensor(FrameRequest(0, (("a red fox", 1.0),), seed=4))
    previous = engine.previous.clone()
    motion = Motion3D(3.0, -2.0, 6.0, (0.999, 0.0, 0.02, 0.0))
    ours = engine.render_tensor(FrameRequest(1, (("a red fox", 1.0),), strength=0.5, motion=motion, seed=4))
    with torch.no_grad():
        units = depth_units(depth.metres(previous / 2 + 0.5), camera)
        moved = warp_3d(previous, units, motion, camera, "smear", "bilinear")
    assert torch.equal(engine.warp.depth, units)
    assert (moved - previous).abs().mean() > 0.01  # the motion moved the picture
    ref = pipeline(StableDiffusionImg2ImgPipeline, model)(
        "a red fox",
        image=(moved / 2 + 0.5).clamp(0, 1),
        strength=0.5,
        num_inference_steps=2,
        guidance_scale=0.0,
        output_type="pt",
        generator=torch.Generator().manual_seed(4),  # fixed_noise: the same seed every frame
    ).images
    np.testing.assert_allclose((ours / 2 + 0.5).clamp(0, 1).numpy(), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("image_model, pixel_size", [("diffusion", 1), ("diffusion", 2), ("unlimited_palette", 2)])
def test_the_show_builds_engines_that_move_in_3d(tmp_path, image_model, pixel_size):
    from vj.show.engines import build_engines, engine_settings

    preset = preset3d(
        tmp_path,
        f"image_model: {image_model}\npixel_size: {pixel_size}\nsteps_per_frame: 1\ncutouts: 2\n"
        "translate_z_3d: 8\nfield_of_view: 40\nnear_plane: 2\nlock_camera: false\n",
    )
    factory = build_engines(preset, device="cpu")
    assert factory.depth.name == "tiny"  # the tiny depth model goes with the tiny model
    engine = factory(engine_settings(preset))
    warp = engine.warp  # a BlockyEngine's is its inner engine's
    assert isinstance(warp, DepthWarp) and warp.camera == Camera(40, 2, 10000, False, 64)
    director = Director(preset)
    frames = [engine.render(director.request(i, i / 24, {})) for i in range(2)]
    assert all(f.shape == (64, 64, 3) for f in frames) and not np.array_equal(*frames)
    # pixel models move their small picture; diffusion renders at least 64 pixels wide
    side = 64 // pixel_size if image_model == "unlimited_palette" else 64
    assert warp.depth.shape == (1, 1, side, side)


def test_2d_presets_load_no_depth_model(tmp_path):
    from vj.show.engines import build_engines, depth_model_name, needs_depth

    flat = load_preset(write(tmp_path, "scenes: a\nmodel: tiny\nwidth: 64\nheight: 64\n"))
    assert not needs_depth(flat) and build_engines(flat, device="cpu").depth is None
    stabilized = load_preset(write(tmp_path, "scenes: a\ndepth_stabilization_weight: 0.1*t\nmodel: arch:sd-turbo\n"))
    assert needs_depth(stabilized) and depth_model_name(stabilized) == "arch:depth-anything-small"
    own = load_preset(write(tmp_path, "scenes: a\nanimation_mode: 3D\ndepth_model: /models/dpt\n"))
    assert depth_model_name(own) == "/models/dpt"
    assert depth_model_name(load_preset(write(tmp_path, "scenes: a\n"))) == "depth-anything/Depth-Anything-V2-Small-hf"


def test_depth_stabilization_pulls_the_frame_toward_the_references_depth():
    from vj.engine.guidance.objective import GuidanceRequest, Objective
    from vj.engine.guidance.perceptors import tiny_perceptor

    calls = []

    def depth(image):  # a differentiable stand-in: brightness as depth
        calls.append(image.requires_grad)
        return image.mean(dim=1, keepdim=True) * 10

    objective = Objective([tiny_perceptor("cpu")], depth=depth)
    reference = torch.rand(1, 3, 16, 16)
    image = reference.clone().requires_grad_(True)
    request = GuidanceRequest(depth_stabilization=2.0)
    assert request.active()
    assert objective.pixel_loss(image, request, reference).item() == 0.0  # the same depth: nothing to pull
    darker = (reference * 0.5).requires_grad_(True)
    loss = objective.pixel_loss(darker, request, reference)
    expected = 2.0 * ((darker.mean(1) * 10 - reference.mean(1) * 10) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert (darker.grad < 0).all()  # brighter = deeper, as the reference
    before = len(calls)
    objective.pixel_loss(darker, request, reference)
    assert len(calls) == before + 1  # the reference's depth is computed once per reference
    objective.pixel_loss(darker, GuidanceRequest(depth_stabilization=0.0), reference)
    assert len(calls) == before + 1  # weight 0: no depth at all


def test_a_reload_into_3d_says_it_waits_for_a_restart(tmp_path):
    from vj.show.engines import build_engines, engine_settings

    flat = load_preset(write(tmp_path, "scenes: a\nmodel: tiny\nwidth: 64\nheight: 64\n"))
    factory = build_engines(flat, device="cpu")
    engine = factory(engine_settings(flat))
    warnings = factory.use_preset(preset3d(tmp_path, "translate_z_3d: 5\n"), engine)
    assert "3D, depth stabilization and the depth preprocessor need the depth model: they take effect at restart" in (
        warnings
    )
    assert not isinstance(engine.warp, DepthWarp)


def test_a_live_show_moves_in_3d_and_a_reload_changes_the_camera_at_once(tmp_path):
    from test_live_show import tiny_loop
    from vj.show.engines import build_engines

    text = "scenes: a forest\nmodel: tiny\nwidth: 64\nheight: 64\nanimation_mode: 3D\ndepth_model: tiny\n"
    path = write(tmp_path, text + "translate_z_3d: 10*t\ndepth_input_size: 140\n", "show.yaml")
    factory = build_engines(load_preset(path), device="cpu")
    assert factory.depth.input_size == 140
    loop, clock = tiny_loop(path, make_engine=factory)
    frames = []
    for step in range(3):
        clock.t = 0.5 * (step + 1)
        loop.step()
        frame, new = loop.slot.take()
        assert new
        frames.append(frame.rgb)
    assert not np.array_equal(frames[1], frames[2])
    engine = loop.engine
    assert isinstance(engine.warp, DepthWarp) and engine.warp.depth is not None
    warnings = factory.use_preset(
        load_preset(write(tmp_path, text + "field_of_view: 30\ndepth_input_size: 266\n")), engine
    )
    assert warnings == [] and engine.warp.camera.field_of_view == 30 and factory.depth.input_size == 266
