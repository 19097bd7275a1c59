"""Latent-blending trees on the tiny model: endpoints equal diffusers' plain txt2img, the tree's shape follows
its plan, chains reuse endpoints, playback and smoothness are what they say."""

import numpy as np
import pytest
import torch

from vj.engine.diffusion.conditioning import ConditioningCache
from vj.engine.errors import EngineError
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest
from vj.engine.transitions.plans import (
    CROSSFEED,
    QUALITIES,
    TURBO_CROSSFEED,
    Crossfeed,
    TreePlan,
    budget_plan,
    explicit_plan,
    model_crossfeed,
    quality_plan,
)
from vj.engine.transitions.latent_blend import (
    Trajectories,
    blend_tree,
    image_difference,
    play,
    slerp_latents,
    smoothness,
    timing,
)

SIZE = 64


def embed(c, text):
    return ConditioningCache(c.text_encoder, c.tokenizer, c.device).embed(text)


def test_endpoints_equal_diffusers_plain_generation(model):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=model.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    cond_a, cond_b = embed(model, "a red fox"), embed(model, "a blue whale")
    paths = blend_tree(Trajectories(model, SIZE, SIZE), cond_a, cond_b, 7, quality_plan("lowest", 0.5, steps=3))
    for path, text in ((paths[0], "a red fox"), (paths[-1], "a blue whale")):
        ref = pipe(
            text,
            num_inference_steps=3,
            guidance_scale=0.0,
            height=SIZE,
            width=SIZE,
            output_type="pt",
            generator=torch.Generator().manual_seed(7),
        ).images
        np.testing.assert_allclose((path.image / 2 + 0.5).clamp(0, 1).numpy(), ref.numpy(), atol=1e-5)


def test_an_endpoint_is_the_engines_first_frame(tiny):
    engine = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE, steps=2))
    first = engine.render_tensor(FrameRequest(0, (("a red fox", 1.0),), seed=3))
    end = Trajectories(tiny, SIZE, SIZE).endpoint(embed(tiny, "a red fox"), 3, steps=2)
    torch.testing.assert_close(end.image, first)


def test_the_tree_follows_its_plan_and_keeps_its_endpoints(tiny):
    cond_a, cond_b = embed(tiny, "a red fox"), embed(tiny, "a blue whale")
    traj = Trajectories(tiny, SIZE, SIZE)
    plan = TreePlan(steps=4, branches=(2, 3), injections=(1, 3))
    paths = blend_tree(traj, cond_a, cond_b, 11, plan)
    fractions = [p.fraction for p in paths]
    assert len(paths) == plan.leaves == 7 and fractions == sorted(fractions) and len(set(fractions)) == 7
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and 0.5 in fractions  # the first branch halves A-B
    assert sorted(p.start for p in paths) == [0, 0, 1, 1, 3, 3, 3]
    assert all(len(p.latents) == 5 and all(z is not None for z in p.latents[p.start :]) for p in paths)
    alone = blend_tree(traj, cond_a, cond_b, 11, TreePlan(4, (), ()))
    torch.testing.assert_close(paths[0].image, alone[0].image)
    torch.testing.assert_close(paths[-1].image, alone[-1].image)


def newest_widest():
    """A difference that finds each newly measured gap the widest: every branch splits the newest right gap."""
    seen = []

    def difference(a, b):
        seen.append(None)
        return float(len(seen))

    return difference


def test_each_branch_goes_into_the_widest_gap(tiny):
    cond_a, cond_b = embed(tiny, "a red fox"), embed(tiny, "a blue whale")
    paths = blend_tree(
        Trajectories(tiny, SIZE, SIZE), cond_a, cond_b, 0, TreePlan(2, (3,), (1,)), difference=newest_widest()
    )
    assert [p.fraction for p in paths] == [0.0, 0.5, 0.75, 0.875, 1.0]


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_parental_crossfeed_slerps_the_branch_toward_its_parents_before_each_step(tiny, power):
    """latentblending: before step 2 of a branch injected at step 1 (3 steps, range 1, decay 1), its latents are
    slerp(own, parents' slerp at step 2, power); the kept step-1 result is its own, before the crossfeed."""
    cond_a, cond_b = embed(tiny, "a red fox"), embed(tiny, "a blue whale")
    traj = Trajectories(tiny, SIZE, SIZE)
    a, branch, b = blend_tree(traj, cond_a, cond_b, 4, TreePlan(3, (1,), (1,)), crossfeed=Crossfeed(power, 1.0, 1.0))
    cond = torch.lerp(cond_a, cond_b, 0.5)
    own = traj.run(0.5, 1, slerp_latents(a.latents[1], b.latents[1], 0.5), cond, 3)
    fed = slerp_latents(own.latents[2], slerp_latents(a.latents[2], b.latents[2], 0.5), power)
    torch.testing.assert_close(branch.latents[2], own.latents[2])
    torch.testing.assert_close(branch.latents[3], traj.run(0.5, 2, fed, cond, 3).latents[3])
    assert (power == 0.0) == torch.equal(branch.latents[3], own.latents[3])


def test_the_parents_are_the_nearest_branches_injected_before(tiny):
    """Branches 0.5 then 0.75, both injected at step 2 of 4: 0.75's parents are A and B (0.5 is no older), so with
    the turbo crossfeed (1, 1, 1) it is one step of its conditioning from slerp(A, B, 0.75) at step 3."""
    cond_a, cond_b = embed(tiny, "a red fox"), embed(tiny, "a blue whale")
    traj = Trajectories(tiny, SIZE, SIZE)
    paths = blend_tree(
        traj, cond_a, cond_b, 2, TreePlan(4, (2,), (2,)), difference=newest_widest(), crossfeed=TURBO_CROSSFEED
    )
    a, branch, b = paths[0], paths[2], paths[3]
    assert [p.fraction for p in paths] == [0.0, 0.5, 0.75, 1.0]
    torch.testing.assert_close(branch.latents[2], slerp_latents(a.latents[2], b.latents[2], 0.75))
    expected = traj.run(0.75, 3, slerp_latents(a.latents[3], b.latents[3], 0.75), torch.lerp(cond_a, cond_b, 0.75), 4)
    torch.testing.assert_close(branch.latents[4], expected.latents[4])


def test_crossfeed_weights_and_defaults_are_latent_blendings():
    """compute_latents_mix: stop = round(range x steps); from the injection step to stop - 1 the weight falls
    linearly from power to power x decay; 0 elsewhere. Defaults 0.3 / 0.6 / 0.9, and 1 / 1 / 1 for turbo models."""
    assert Crossfeed(0.3, 0.6, 0.9).weights(30, 15) == pytest.approx([0.0] * 15 + [0.3, 0.285, 0.27] + [0.0] * 12)
    assert Crossfeed(1.0, 1.0, 1.0).weights(4, 2) == [0.0, 0.0, 1.0, 1.0]
    assert Crossfeed(0.5, 0.75, 0.2).weights(4, 2) == [0.0, 0.0, 0.5, 0.0]  # one step in range: power
    assert Crossfeed(0.3, 0.6, 0.9).weights(4, 3) == [0.0] * 4  # injected after the range
    assert CROSSFEED == Crossfeed(0.3, 0.6, 0.9) and TURBO_CROSSFEED == Crossfeed(1.0, 1.0, 1.0)
    assert model_crossfeed("stabilityai/sd-turbo") == model_crossfeed("arch:sd-turbo") == TURBO_CROSSFEED
    assert model_crossfeed("tiny") == CROSSFEED
    assert model_crossfeed("tiny", power=0.5, decay=0) == Crossfeed(0.5, 0.6, 0.0)
    with pytest.raises(EngineError, match="within 0..1"):
        Crossfeed(1.5, 1.0, 1.0)


def test_injection_steps_round_strength_times_steps():
    """latentblending: idx_injection = round(depth_strength x steps) (list_injection_idx: round(s x steps))."""
    assert quality_plan("medium", 0.4, steps=4).injections[0] == 2  # round(1.6); not round(0.4 x 3) = 1
    assert quality_plan("medium", 0.5, steps=10).injections[0] == 5  # round(5.0); not round(4.5) = 4
    assert budget_plan(1.0, 0.01, 0.005, depth_strength=0.7, steps=4).injections[0] == 3  # round(2.8)
    # The original's cumulative lists [2, 4, 8, 20] at [0.0, 0.3, 0.5, 0.9]: new branches per level in vj
    plan = explicit_plan([4 - 2, 8 - 4, 20 - 8], [0.3, 0.5, 0.9], steps=30)
    assert plan.injections == (9, 15, 27) and plan.leaves == 20


def test_a_chain_reuses_the_shared_endpoint(tiny):
    conds = [embed(tiny, t) for t in ("a red fox", "a blue whale", "a green tree")]
    traj = Trajectories(tiny, SIZE, SIZE)
    plan = quality_plan("lowest", 0.5, steps=2)
    ab = blend_tree(traj, conds[0], conds[1], 5, plan)
    calls = []
    real_unet = tiny.unet.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return real_unet(*args, **kwargs)

    tiny.unet.forward = counting
    try:
        bc = blend_tree(traj, conds[1], conds[2], 5, plan, ends=(ab[-1], None))
    finally:
        del tiny.unet.forward
    assert len(calls) == plan.unet_calls() - plan.steps  # B's trajectory was not run again
    torch.testing.assert_close(bc[0].image, ab[-1].image)
    assert bc[0].fraction == 0.0 and bc[-1].fraction == 1.0


def test_computing_a_tree_leaves_the_engines_scheduler_alone(tiny):
    request = FrameRequest(0, (("a red fox", 1.0),), seed=1)
    before = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE, steps=2)).render_tensor(request)
    blend_tree(Trajectories(tiny, SIZE, SIZE), embed(tiny, "a"), embed(tiny, "b"), 0, TreePlan(5, (1,), (2,)))
    after = FrameEngine(tiny, EngineSettings(width=SIZE, height=SIZE, steps=2)).render_tensor(request)
    torch.testing.assert_close(before, after)


def test_quality_plans_grow_with_the_quality_and_depth_moves_the_injections():
    leaves = [quality_plan(q, 0.5, steps=4).leaves for q in QUALITIES]
    assert leaves == list(QUALITIES.values()) == sorted(leaves)
    assert quality_plan("medium", 0.0, steps=4).injections[0] == 0  # creative: from the start
    assert quality_plan("medium", 1.0, steps=4).injections == (3,)  # close to an alpha blend
    plan = quality_plan("high", 0.3, steps=8)
    assert plan.injections == tuple(sorted(set(plan.injections))) and plan.leaves == 21
    assert list(plan.branches) == sorted(plan.branches)  # later (cheaper) levels get more


def test_explicit_and_budget_plans():
    plan = explicit_plan([2, 4], [0.25, 0.75], steps=4)
    assert plan == TreePlan(4, (2, 4), (1, 3)) and plan.unet_calls() == 2 * 4 + 2 * 3 + 4 * 1
    small, large = budget_plan(0.5, 0.01, 0.005), budget_plan(2.0, 0.01, 0.005)
    assert small.leaves < large.leaves
    spent = (large.unet_calls() - 2 * large.steps) * 0.01 + sum(large.branches) * 0.005
    assert spent <= 2.0
    assert budget_plan(0.0, 0.01, 0.005).leaves == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TreePlan(4, (1,), (4,)), "injection steps must increase within 0..3"),
        (lambda: TreePlan(4, (1, 2), (2, 1)), "injection steps must increase"),
        (lambda: TreePlan(4, (1,), (1, 2)), "1 branch counts for 2 injection steps"),
        (lambda: TreePlan(0, (), ()), "at least 1 step"),
        (lambda: quality_plan("best"), "'best' is not one of lowest, low, medium, high, ultra"),
        (lambda: quality_plan("low", 1.5), "depth_strength must be within 0..1"),
        (lambda: explicit_plan([1], [0.2, 0.4]), "1 branch counts for 2 injection strengths"),
    ],
)
def test_bad_plans_are_one_clear_error(make, message):
    with pytest.raises(EngineError, match=message):
        make()


def test_play_blends_neighbouring_leaves_at_equal_time_steps():
    leaves = [torch.full((1, 3, 4, 4), v) for v in (-1.0, 0.0, 1.0)]
    assert torch.equal(play(leaves, 0.0), leaves[0]) and torch.equal(play(leaves, 1.0), leaves[2])
    assert torch.allclose(play(leaves, 0.25), torch.full((1, 3, 4, 4), -0.5))
    assert torch.allclose(play(leaves, 0.75), torch.full((1, 3, 4, 4), 0.5))
    assert torch.equal(play(leaves[:1], 0.3), leaves[0])


def test_leaves_play_at_times_spaced_by_their_differences():
    leaves = [torch.full((1, 3, 4, 4), v) for v in (0.0, 0.1, 1.0)]  # an uneven tree: a small, then a big step
    times = timing(leaves)
    assert times == pytest.approx([0.0, 0.1, 1.0])
    assert torch.allclose(play(leaves, 0.05, times), torch.full((1, 3, 4, 4), 0.05))
    frames = [play(leaves, k / 20, times) for k in range(21)]
    assert smoothness(frames)[0] == pytest.approx(1.0, abs=1e-4)  # even, where equal steps would not be
    assert smoothness([play(leaves, k / 20) for k in range(21)])[0] > 1.5
    assert timing(leaves[:1] * 3) == [0.0, 0.5, 1.0]  # identical leaves: equal steps


def test_difference_and_smoothness():
    a, b = torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256)
    b[..., ::2, ::2] = 1.0  # fine pixel noise: averaged away to a quarter
    assert image_difference(a, b) == pytest.approx(0.25)
    even = [torch.full((1, 3, 8, 8), v / 10) for v in range(11)]
    ratio, changes = smoothness(even)
    assert ratio == pytest.approx(1.0) and len(changes) == 10
    jumpy = even[:5] + [e + 0.5 for e in even[5:]]
    assert smoothness(jumpy)[0] > 3
