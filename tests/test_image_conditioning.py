"""Image-embedding guidance of the conditioning: weight methods, the mix, dtypes and errors on hand-made tensors."""

import math

import pytest
import torch

from vj.engine.diffusion.image_conditioning import (
    BOS_CAP,
    cluster_peaks,
    clustered_weights,
    combined_weights,
    concept_features,
    concept_weights,
    image_guided_conditioning,
    linear_weights,
    mix,
    threshold_weights,
    token_matches,
)


def close(actual, expected, tol=1e-6):
    """Element-wise comparison against a list (or tensor) of expected values."""
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


def basis(i, width=4):
    return torch.eye(width)[i]


def random_conditioning(length=77, width=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, length, width, generator=g) * 3).to(dtype)


# ---- mapping and similarity (the source's rule: softmax over the text tokens, best image token per text token) --


def padded_prompt():
    """'BOS moss stone EOS pad pad' in a 4-wide space: the three rows after the words are identical, as padding is."""
    e0, e1, e2, e3 = (basis(i) for i in range(4))
    return torch.stack([e3 * 3, e0 * 2, e1 * 2, e2, e2, e2])[None]


def test_each_text_token_takes_the_image_token_that_fits_it_best():
    image = torch.stack([basis(0) * 5, basis(2)])  # token 0 points at 'moss', token 1 at the padding direction
    similarity, index = token_matches(padded_prompt(), image)
    # image token 0 gives 'moss' all its mass (softmax of 100 x cosine over the text tokens); image token 1 splits
    # its mass over the three identical padding rows, so each scores 1/3, not the cosine 1 they share with it
    close(similarity, [0, 1, 0, 1 / 3, 1 / 3, 1 / 3])
    assert index[1] == 0 and index[3:].tolist() == [1, 1, 1]
    assert similarity.dtype == torch.float32


def test_similarity_is_the_largest_probability_any_image_token_gives():
    # two image tokens both pointing between 'moss' (e0) and 'stone' (e1): cosines 0.8/0.6 and 0.6/0.8
    image = torch.tensor([[0.8, 0.6, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]])
    prompt = torch.stack([basis(3), basis(0), basis(1)])[None]
    similarity, index = token_matches(prompt, image)
    p = torch.softmax(torch.tensor([0.0, 80.0, 60.0]), 0)
    close(similarity, [p[0], p[1], p[1]])
    assert index.tolist()[1:] == [0, 1]
    # a pooled vector (D,) is one image token: every text token takes it
    assert token_matches(prompt, image[0])[1].tolist() == [0, 0, 0]


# ---- linear -----------------------------------------------------------------------------------------------


def test_linear_ramp_from_back_to_front():
    close(linear_weights(5, 0.8), [0.0, 0.2, 0.4, 0.6, 0.8])
    w = linear_weights(77, 1.0)
    assert w.shape == (77,) and w.dtype == torch.float32
    assert w[0] == 0.0 and w[-1] == 1.0 and bool((w[1:] > w[:-1]).all())
    close(w[38], 0.5)


def test_linear_clamps_strength_and_caps_bos():
    close(linear_weights(5, 2.0), [0.0, 0.5, 1.0, 1.0, 1.0])
    close(linear_weights(4, -1.0), [0.0] * 4)
    close(linear_weights(4, float("nan")), [0.0] * 4)
    close(linear_weights(2, 1.0), [0.0, 1.0])
    close(linear_weights(1, 1.0), [0.0])
    assert linear_weights(0, 1.0).shape == (0,)
    assert bool((linear_weights(77, 5.0)[0] <= BOS_CAP))


# ---- threshold (the source: `strength` at or above the average similarity, 0 elsewhere) ---------------------


def test_threshold_auto_is_the_average_similarity():
    sim = torch.tensor([0.0, 0.15, 0.1, 0.03, 0.01, 0.01])  # average 0.05: 0.15 and 0.1 pass
    close(threshold_weights(sim, 0.6), [0, 0.6, 0.6, 0, 0, 0])
    close(threshold_weights(sim, 0.6, "auto"), [0, 0.6, 0.6, 0, 0, 0])
    close(threshold_weights(sim, 0.6, 0.12), [0, 0.6, 0, 0, 0, 0])  # a number: at least that similarity


def test_threshold_caps_bos_and_clamps():
    sim = torch.tensor([0.9, 0.1, 0.9])
    close(threshold_weights(sim, 0.6, 0.5), [BOS_CAP, 0.0, 0.6])
    close(threshold_weights(sim, 1.7, 0.5), [BOS_CAP, 0.0, 1.0])
    close(threshold_weights(torch.tensor([0.1, float("nan"), 0.9]), 0.6, 0.5), [0.0, 0.0, 0.6])
    with pytest.raises(ValueError, match="auto"):
        threshold_weights(sim, 0.6, "half")


# ---- clustered (the source: peaks = local maxima at or above the average; slopes to the midpoints) ------------


def test_clustered_peaks_fall_linearly_to_the_midpoint_between_them():
    sim = torch.tensor([0, 0.1, 0.2, 0.6, 0.2, 0.1, 0.1, 0.3, 0.7, 0.2, 0.1, 0.1])  # average 0.225; peaks at 3 and 8
    assert cluster_peaks(sim).tolist() == [3, 8]
    # valleys at 0, 3 + ceil(5 / 2) = 6 and 11: 3 rises over 3 steps, falls over 3; 8 rises over 2, falls over 3
    third = 1 / 3
    close(
        clustered_weights(sim, 0.9),
        [0.9 * w for w in [0, third, 2 * third, 1, 2 * third, third, 0, 0.5, 1, 2 * third, third, 0]],
    )


def test_clustered_local_maxima_below_the_average_are_not_peaks():
    sim = torch.tensor([0.0, 0.9, 0.0, 0.1, 0.0, 0.0])  # 0.1 at 3 is a local maximum below the average 1/6
    assert cluster_peaks(sim).tolist() == [1]
    close(clustered_weights(sim, 1.0), [0, 1, 0.75, 0.5, 0.25, 0])  # one peak: down to the last token


def test_clustered_ends_plateaus_and_bos():
    # the first and last tokens are never peaks; the BOS valley stays 0
    close(clustered_weights(torch.tensor([0.9, 0.1, 0.1, 0.9]), 1.0), [0, 0, 0, 0])
    # equal neighbours are both peaks (the source divides by zero here); both take the full weight
    close(clustered_weights(torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0, 0.0]), 1.0), [0, 0.5, 1, 1, 0.5, 0])
    close(clustered_weights(torch.zeros(4), 1.0)[0], 0.0)
    close(clustered_weights(torch.tensor([0.1, 0.9]), 1.0), [0, 0])  # too short to hold a peak
    close(clustered_weights(torch.tensor([0.0, 0.8, 0.2, 0.0]), -1.0), [0, 0, 0, 0])


# ---- combination (the source: linear, clustered and threshold weights by element-wise max, one pass) ---------


def test_methods_combine_by_their_largest_weight():
    sim = torch.tensor([0.0, 0.1, 0.1, 0.7, 0.1])  # average 0.2: token 3 passes the threshold and is the peak
    close(combined_weights(sim, ("linear",), 0.8), [0, 0.2, 0.4, 0.6, 0.8])
    close(combined_weights(sim, ("threshold",), 0.8), [0, 0, 0, 0.8, 0])
    close(combined_weights(sim, ("clustered",), 0.8), [0, 0.8 / 3, 1.6 / 3, 0.8, 0])
    close(combined_weights(sim, ("linear", "threshold", "clustered"), 0.8), [0, 0.8 / 3, 1.6 / 3, 0.8, 0.8])


# ---- concept ----------------------------------------------------------------------------------------------


def concept_example():
    """A prompt 'BOS cat sofa catsofa pad pad' in a 4-wide space, its concept 'BOS cat', an image."""
    e0, e1, e2, e3 = (basis(i) for i in range(4))
    prompt = torch.stack([e3 * 3, e0 * 2, e1 * 2, (e0 + e1), e2, e3])[None]
    concept = torch.stack([e3 * 3, e0, e0 * 0.5])[None]
    image = torch.tensor([0.6, 0.2, 0.0, 0.8])
    return prompt, concept, image


def test_concept_selects_tokens_matching_the_concept():
    prompt, concept, image = concept_example()
    # only 'cat' (position 1) passes 0.9; the concept's BOS row is dropped, so the e3 token at 5 is not selected
    close(concept_weights(prompt, concept, image, 0.8, 0.9), [0, 0.8, 0, 0, 0, 0])
    # at 0.7 'catsofa' (cos 0.707 with cat) joins, scaled by its image similarity relative to the best selected
    relative = ((0.6 + 0.2) / math.sqrt(2)) / 0.6
    close(concept_weights(prompt, concept, image, 0.8, 0.7), [0, 0.8, 0, 0.8 * relative, 0, 0])
    close(concept_weights(prompt, concept, image, 0.8, 1.01), [0.0] * 6)


def test_concept_rows_given_as_is_and_pooled():
    prompt, _, image = concept_example()
    # (M, D) rows are taken as given: an e3 row selects position 5 (and BOS stays at 0)
    w = concept_weights(prompt, torch.stack([basis(3), basis(0)]), image, 1.0, 0.9)
    close(w, [0, 0.6 / 0.8, 0, 0, 0, 1.0])
    # a single pooled vector
    close(concept_weights(prompt, basis(1) * 7, image, 0.5, 0.9), [0, 0, 0.5, 0, 0, 0])


def test_concept_negative_image_similarity_gets_nothing():
    prompt, concept, _ = concept_example()
    image = torch.tensor([-1.0, 0.0, 0.0, 0.0])
    close(concept_weights(prompt, concept, image, 1.0, 0.5), [0.0] * 6)
    with pytest.raises(ValueError, match="width"):
        concept_weights(prompt, torch.zeros(1, 3, 5), torch.ones(4), 1.0, 0.5)


# ---- mix --------------------------------------------------------------------------------------------------


def test_zero_weights_leave_conditioning_bit_identical():
    cond = random_conditioning()
    out = mix(cond, torch.ones(16), torch.zeros(77))
    assert torch.equal(out, cond)
    half = random_conditioning(dtype=torch.float16)
    assert torch.equal(mix(half, torch.ones(16), torch.zeros(77)), half)


def test_full_weight_is_image_at_token_norm_others_untouched():
    cond = random_conditioning()
    image = torch.linspace(-1.0, 2.0, 16)
    w = torch.zeros(77)
    w[5] = 1.0
    out = mix(cond, image, w)
    close(out[0, 5], image / image.norm() * cond[0, 5].norm())
    close(out[0, 5].norm(), cond[0, 5].norm(), tol=1e-5)
    keep = torch.ones(77, dtype=torch.bool)
    keep[5] = False
    assert torch.equal(out[0, keep], cond[0, keep])


def test_partial_weight_is_linear_mix():
    cond = torch.stack([basis(3), basis(0) * 2, basis(1) * 4])[None]
    image = basis(2) * 10
    out = mix(cond, image, torch.tensor([0.0, 0.25, 0.5]))
    close(out[0], [[0, 0, 0, 1], [1.5, 0, 0.5, 0], [0, 2, 2, 0]])


def test_bos_never_above_cap():
    cond = torch.stack([basis(0) * 2, basis(1)])[None]
    image = basis(2)
    out = mix(cond, image, torch.tensor([1.0, 0.0]))
    close(out[0, 0], [2 * (1 - BOS_CAP), 0, 2 * BOS_CAP, 0])
    assert torch.equal(out[0, 1], cond[0, 1])
    out = mix(cond, image, torch.tensor([1.0, 0.0]), bos_cap=0.05)
    close(out[0, 0], [2 * 0.95, 0, 2 * 0.05, 0])
    assert torch.equal(mix(cond, image, torch.tensor([1.0, 0.0]), bos_cap=0.0), cond)


def test_weights_are_clamped():
    cond = torch.stack([basis(3), basis(0) * 2, basis(1)])[None]
    image = basis(2)
    out = mix(cond, image, torch.tensor([0.0, 3.0, -2.0]))
    close(out[0, 1], [0, 0, 2, 0])
    assert torch.equal(out[0, 2], cond[0, 2])
    assert torch.equal(mix(cond, image, [0.0, float("nan"), -1.0]), cond)


def test_mix_rejects_wrong_weight_length():
    with pytest.raises(ValueError, match="weights"):
        mix(random_conditioning(), torch.ones(16), torch.zeros(76))


# ---- dtype, shape and width -------------------------------------------------------------------------------


def test_float16_in_float16_out():
    cond = random_conditioning(dtype=torch.float16)
    image = torch.linspace(-1.0, 2.0, 16)  # float32 image with a float16 conditioning
    w = linear_weights(77, 0.7)
    out = mix(cond, image, w)
    assert out.dtype == torch.float16 and out.shape == cond.shape
    expected = mix(cond.float(), image, w).half()
    torch.testing.assert_close(out, expected, atol=1e-2, rtol=1e-3)
    assert torch.equal(out[0, 0], cond[0, 0])  # linear gives BOS weight 0
    assert token_matches(cond, image)[0].dtype == torch.float32
    tokens = torch.stack([image, -image, image.flip(0)])
    for method, options in [
        ("linear", {}),
        ("threshold", {"threshold": 0.0}),
        ("clustered", {}),
        (("linear", "threshold"), {"mapping": "pooled"}),
        ("concept", {"concept_conditioning": cond[:, 1:3], "threshold": 0.5}),
    ]:
        assert image_guided_conditioning(cond, tokens, method, 0.5, **options).dtype == torch.float16


def test_bfloat16_and_2d_conditioning():
    cond = random_conditioning(dtype=torch.bfloat16)
    assert mix(cond, torch.ones(16), linear_weights(77, 1.0)).dtype == torch.bfloat16
    flat = random_conditioning()[0]
    out = mix(flat, torch.ones(16), linear_weights(77, 1.0))
    assert out.shape == (77, 16)


def test_mismatched_width_raises():
    cond = random_conditioning(width=16)
    image = torch.ones(3, 12)
    for call in (
        lambda: token_matches(cond, image),
        lambda: mix(cond, image[0], torch.zeros(77)),
        lambda: image_guided_conditioning(cond, image, "linear", 0.0),
        lambda: image_guided_conditioning(cond, image, "threshold", 0.5, threshold=0.1),
    ):
        with pytest.raises(ValueError, match="width 12 does not match the token width 16"):
            call()


def test_bad_shapes_and_zero_image_raise():
    with pytest.raises(ValueError):
        mix(torch.zeros(2, 77, 16), torch.ones(16), torch.zeros(77))
    with pytest.raises(ValueError, match="targets"):
        mix(random_conditioning(), torch.ones(5, 16), torch.zeros(77))
    with pytest.raises(ValueError):
        token_matches(random_conditioning(), torch.ones(2, 3, 16))
    with pytest.raises(ValueError, match="nonzero"):
        token_matches(random_conditioning(), torch.stack([torch.ones(16), torch.zeros(16)]))


# ---- dispatch ---------------------------------------------------------------------------------------------


def test_each_token_moves_toward_its_own_matched_image_token():
    prompt = padded_prompt()
    near_stone, near_moss = basis(1) + 0.5 * basis(3), basis(0) + 0.5 * basis(2)
    image = torch.stack([near_stone, near_moss * 4])
    assert token_matches(prompt, image)[1][1:3].tolist() == [1, 0]
    out = image_guided_conditioning(prompt, image, "linear", 1.0)
    w = linear_weights(6, 1.0)
    # 'moss' (norm 2) moves toward the image token near it, 'stone' toward the other, each at its own norm
    close(out[0, 1], (1 - w[1]) * prompt[0, 1] + w[1] * near_moss / near_moss.norm() * 2)
    close(out[0, 2], (1 - w[2]) * prompt[0, 2] + w[2] * near_stone / near_stone.norm() * 2)


def test_pooled_mapping_uses_the_class_token_only():
    cond = random_conditioning()
    tokens = torch.stack([cond[0, 10], cond[0, 40], -cond[0, 5]])
    pooled = image_guided_conditioning(cond, tokens, "threshold", 0.6, mapping="pooled")
    similarity, _ = token_matches(cond, tokens[0])
    assert torch.equal(pooled, mix(cond, tokens[0], threshold_weights(similarity, 0.6)))
    assert not torch.equal(pooled, image_guided_conditioning(cond, tokens, "threshold", 0.6))
    with pytest.raises(ValueError, match="mapping"):
        image_guided_conditioning(cond, tokens, "linear", 0.5, mapping="mean")


def test_dispatch_matches_the_weight_functions():
    cond = random_conditioning()
    tokens = torch.stack([cond[0, 10] + 0.1 * cond[0, 40], cond[0, 20], cond[0, 60]])
    similarity, index = token_matches(cond, tokens)
    cases = [
        ("linear", {}, linear_weights(77, 0.6)),
        ("threshold", {"threshold": 0.3}, threshold_weights(similarity, 0.6, 0.3)),
        ("threshold", {}, threshold_weights(similarity, 0.6)),
        ("clustered", {}, clustered_weights(similarity, 0.6)),
        (
            ["linear", "clustered", "threshold"],
            {},
            combined_weights(similarity, ("linear", "clustered", "threshold"), 0.6),
        ),
    ]
    for method, options, weights in cases:
        assert bool((weights > 0).any()), method
        out = image_guided_conditioning(cond, tokens, method, 0.6, **options)
        assert torch.equal(out, mix(cond, tokens[index], weights)), method
        assert torch.equal(image_guided_conditioning(cond, tokens, method, 0.0, **options), cond), method
    # concept takes the pooled (class) token only, and mixes in its features along the concept
    concept = cond[0, 10:11]
    out = image_guided_conditioning(cond, tokens, "concept", 0.6, concept_conditioning=concept, threshold=0.2)
    expected = mix(cond, concept_features(tokens[0], concept), concept_weights(cond, concept, tokens[0], 0.6, 0.2))
    assert torch.equal(out, expected)
    assert torch.equal(
        concept_weights(cond, concept, tokens[0], 0.6), concept_weights(cond, concept, tokens[0], 0.6, 0.2)
    )  # auto: 0.2


def test_dispatch_passes_bos_cap():
    cond = random_conditioning()
    image = cond[0, 0].clone()
    out = image_guided_conditioning(cond, image, "threshold", 1.0, threshold=0.5, bos_cap=0.0)
    assert torch.equal(out[0, 0], cond[0, 0])


def test_dispatch_errors_name_the_valid_choices():
    cond, image = random_conditioning(), torch.ones(16)
    with pytest.raises(ValueError, match="clustered, concept, linear, threshold"):
        image_guided_conditioning(cond, image, "spiral", 0.5)
    with pytest.raises(ValueError, match="concept only alone"):
        image_guided_conditioning(cond, image, ["linear", "concept"], 0.5, threshold=0.5)
    with pytest.raises(ValueError, match="at most once"):
        image_guided_conditioning(cond, image, ["linear", "linear"], 0.5)
    with pytest.raises(ValueError, match="unknown.*spread"):
        image_guided_conditioning(cond, image, "linear", 0.5, spread=2)
    with pytest.raises(ValueError, match="unknown.*threshold"):
        image_guided_conditioning(cond, image, "clustered", 0.5, threshold=0.2)  # clustered: always the average
    with pytest.raises(ValueError, match="concept_conditioning"):
        image_guided_conditioning(cond, image, "concept", 0.5, threshold=0.5)


def test_concept_maps_only_the_image_features_along_the_concept():
    width = 8
    conditioning = torch.zeros(1, 5, width)
    conditioning[0, :, 0] = 1.0  # every token points along axis 0 (the concept's direction)
    concept = torch.zeros(2, width)
    concept[0, 0], concept[1, 1] = 1.0, 1.0  # the concept spans axes 0 and 1
    image = torch.tensor([3.0, 4.0, 5.0, 0, 0, 0, 0, 0])
    assert torch.allclose(concept_features(image, concept), torch.tensor([3.0, 4.0, 0, 0, 0, 0, 0, 0]))
    out = image_guided_conditioning(conditioning, image, "concept", 1.0, concept_conditioning=concept, threshold=0.5)
    assert torch.equal(out[0, 0], conditioning[0, 0])  # BOS untouched
    assert torch.allclose(out[0, 1:, 2:], torch.zeros(4, width - 2))  # nothing outside the concept's span
    assert not torch.equal(out[0, 1:], conditioning[0, 1:])
    orthogonal = torch.tensor([0, 0, 1.0, 0, 0, 0, 0, 0])  # no feature along the concept
    assert concept_features(orthogonal, concept) is None
    assert torch.equal(
        image_guided_conditioning(
            conditioning, orthogonal, "concept", 1.0, concept_conditioning=concept, threshold=0.5
        ),
        conditioning,
    )


# ---- the image tower's tokens -----------------------------------------------------------------------------


def test_picture_tokens_are_every_vision_token_through_the_final_norm_and_projection():
    import numpy as np
    from vj.engine.guidance.perceptors import tiny_perceptor

    perceptor = tiny_perceptor("cpu", embed_dim=32)
    picture = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tokens = perceptor.encode_picture_tokens(picture)
    assert tokens.shape == (1 + 8 * 8, 32) and tokens.dtype == torch.float32  # class token + 8 x 8 patches
    visual = perceptor.model.visual
    pixels = (torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255 - perceptor._mean) / perceptor._std
    with torch.no_grad():
        states = visual.ln_post(visual.transformer(visual._embeds(pixels)))  # every token, post-layernorm
        expected = states[0] @ visual.proj  # ... and projection
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)
    # the class token is the picture's embedding; the tower is left as it was
    torch.testing.assert_close(tokens[0] / tokens[0].norm(), perceptor.encode_picture(picture), atol=1e-5, rtol=0)
    assert visual.output_tokens is False
