"""Image-embedding guidance of the conditioning: weight methods, the mix, dtypes and errors on hand-made tensors."""

import math

import pytest
import torch

from engine.image_conditioning import (BOS_CAP, clustered_weights, concept_features, concept_weights,
                                       image_guided_conditioning, linear_weights, mix, threshold_weights,
                                       token_similarity)


def close(actual, expected, tol=1e-6):
    """Element-wise comparison against a list (or tensor) of expected values."""
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


def basis(i, width=4):
    return torch.eye(width)[i]


def random_conditioning(length=77, width=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, length, width, generator=g) * 3).to(dtype)


# ---- similarity -------------------------------------------------------------------------------------------


def test_token_similarity_is_cosine_per_token():
    cond = torch.stack([basis(0) * 5, basis(1), basis(0) + basis(1), -basis(0) * 0.1])[None]
    close(token_similarity(cond, basis(0) * 2), [1.0, 0.0, 1 / math.sqrt(2), -1.0])
    assert token_similarity(cond[0], basis(0)[None]).shape == (4,)   # (L, D) and (1, D) accepted


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


# ---- threshold --------------------------------------------------------------------------------------------


def test_threshold_with_floor():
    sim = torch.tensor([0.1, 0.1, 0.5, 0.3, 0.7, 0.49])
    close(threshold_weights(sim, 0.6, 0.5), [0.0, 0.0, 0.6, 0.0, 0.6, 0.0])
    close(threshold_weights(sim, 0.6, 0.5, floor=0.1), [0.1, 0.1, 0.6, 0.1, 0.6, 0.1])


def test_threshold_caps_bos_and_clamps():
    sim = torch.tensor([0.9, 0.1, 0.9])
    close(threshold_weights(sim, 0.6, 0.5), [BOS_CAP, 0.0, 0.6])
    close(threshold_weights(sim, 0.6, 0.5, floor=0.3), [BOS_CAP, 0.3, 0.6])
    close(threshold_weights(torch.tensor([0.1, 0.1, 0.9]), 0.6, 0.5, floor=0.2), [BOS_CAP, 0.2, 0.6])
    close(threshold_weights(sim, 1.7, 0.5, floor=-0.5), [BOS_CAP, 0.0, 1.0])
    close(threshold_weights(torch.tensor([0.1, float("nan"), 0.9]), 0.6, 0.5), [0.0, 0.0, 0.6])


# ---- clustered --------------------------------------------------------------------------------------------


def peaks(length, at, low=0.0, high=1.0):
    s = torch.full((length,), low)
    for i, p in enumerate(at):
        s[p] = high - 0.01 * i
    return s


def test_clustered_peaks_and_linear_falloff():
    w = clustered_weights(peaks(12, [3, 9]), 0.9, count=2, spread=2)
    third = 0.9 / 3
    close(w, [0, third, 2 * third, 0.9, 2 * third, third, 0, third, 2 * third, 0.9, 2 * third, third])


def test_clustered_takes_only_count_strongest():
    sim = torch.tensor([0.0, 0.1, 0.8, 0.2, 0.0, 0.0, 0.7, 0.0, 0.0, 0.3])
    close(clustered_weights(sim, 1.0, count=1, spread=0), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    close(clustered_weights(sim, 1.0, count=2, spread=0), [0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    close(clustered_weights(sim, 0.5, count=0, spread=3), [0.0] * 10)


def test_clustered_overlap_takes_max():
    w = clustered_weights(peaks(12, [4, 6]), 1.0, count=2, spread=3)
    # from 4: 0.25 at 1, 0.5 at 2, 0.75 at 3; from 6: 0.75 at 5/7, 0.5 at 8, 0.25 at 9; overlap at 5 -> 0.75
    close(w, [0, 0.25, 0.5, 0.75, 1.0, 0.75, 1.0, 0.75, 0.5, 0.25, 0, 0])


def test_clustered_sequence_ends_and_bos():
    w = clustered_weights(peaks(8, [7]), 1.0, count=1, spread=3)
    close(w, [0, 0, 0, 0, 0.25, 0.5, 0.75, 1.0])
    # a peak next to BOS: BOS gets the fall-off but no more than the cap
    w = clustered_weights(peaks(8, [1]), 1.0, count=1, spread=3)
    close(w, [BOS_CAP, 1.0, 0.75, 0.5, 0.25, 0, 0, 0])
    # BOS is never chosen as a peak, even when it is the most similar token
    sim = torch.tensor([1.0, 0.0, 0.0, 0.5, 0.0])
    close(clustered_weights(sim, 1.0, count=1, spread=0), [0, 0, 0, 1, 0])


def test_clustered_ties_count_beyond_length_and_errors():
    close(clustered_weights(torch.tensor([0.0, 0.5, 0.5, 0.5]), 1.0, count=1, spread=0), [0, 1, 0, 0])
    close(clustered_weights(torch.zeros(4), 0.4, count=10, spread=0), [0, 0.4, 0.4, 0.4])
    close(clustered_weights(torch.tensor([0.0, float("nan"), 0.2]), 1.0, count=1, spread=0), [0, 0, 1])
    with pytest.raises(ValueError):
        clustered_weights(torch.zeros(4), 1.0, spread=-1)


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
    image = torch.linspace(-1.0, 2.0, 16)   # float32 image with a float16 conditioning
    w = linear_weights(77, 0.7)
    out = mix(cond, image, w)
    assert out.dtype == torch.float16 and out.shape == cond.shape
    expected = mix(cond.float(), image, w).half()
    torch.testing.assert_close(out, expected, atol=1e-2, rtol=1e-3)
    assert torch.equal(out[0, 0], cond[0, 0])   # linear gives BOS weight 0
    assert token_similarity(cond, image).dtype == torch.float32
    for method, options in [("linear", {}), ("threshold", {"threshold": 0.0}), ("clustered", {}),
                            ("concept", {"concept_conditioning": cond[:, 1:3], "threshold": 0.5})]:
        assert image_guided_conditioning(cond, image, method, 0.5, **options).dtype == torch.float16


def test_bfloat16_and_2d_conditioning():
    cond = random_conditioning(dtype=torch.bfloat16)
    assert mix(cond, torch.ones(16), linear_weights(77, 1.0)).dtype == torch.bfloat16
    flat = random_conditioning()[0]
    out = mix(flat, torch.ones(16), linear_weights(77, 1.0))
    assert out.shape == (77, 16)


def test_mismatched_width_raises():
    cond = random_conditioning(width=16)
    image = torch.ones(12)
    for call in (lambda: token_similarity(cond, image),
                 lambda: mix(cond, image, torch.zeros(77)),
                 lambda: image_guided_conditioning(cond, image, "linear", 0.0),
                 lambda: image_guided_conditioning(cond, image, "threshold", 0.5, threshold=0.1)):
        with pytest.raises(ValueError, match="width 12 does not match the token width 16"):
            call()


def test_bad_shapes_and_zero_image_raise():
    with pytest.raises(ValueError):
        mix(torch.zeros(2, 77, 16), torch.ones(16), torch.zeros(77))
    with pytest.raises(ValueError):
        token_similarity(random_conditioning(), torch.ones(2, 16))
    with pytest.raises(ValueError, match="nonzero"):
        token_similarity(random_conditioning(), torch.zeros(16))


# ---- dispatch ---------------------------------------------------------------------------------------------


def test_dispatch_matches_the_weight_functions():
    cond = random_conditioning()
    image = cond[0, 10] + 0.1 * cond[0, 40]
    sim = token_similarity(cond, image)
    cases = [
        ("linear", {}, linear_weights(77, 0.6)),
        ("threshold", {"threshold": 0.3, "floor": 0.05}, threshold_weights(sim, 0.6, 0.3, 0.05)),
        ("clustered", {"count": 2, "spread": 4}, clustered_weights(sim, 0.6, 2, 4)),
        ("concept", {"concept_conditioning": cond[0, 10:11], "threshold": 0.2},
         concept_weights(cond, cond[0, 10:11], image, 0.6, 0.2)),
    ]
    for method, options, weights in cases:
        assert bool((weights > 0).any()), method
        out = image_guided_conditioning(cond, image, method, 0.6, **options)
        # concept mixes in only the image's features along the concept (its projection on the concept's rows)
        mapped = concept_features(image, cond[0, 10:11]) if method == "concept" else image
        assert torch.equal(out, mix(cond, mapped, weights)), method
        quiet = {**options, "floor": 0.0} if "floor" in options else options   # the floor is its own weight
        zero = image_guided_conditioning(cond, image, method, 0.0, **quiet)
        assert torch.equal(zero, cond), method
    assert clustered_weights(sim, 1.0, 1, 0).argmax() == 10


def test_dispatch_passes_bos_cap():
    cond = random_conditioning()
    image = cond[0, 0].clone()
    out = image_guided_conditioning(cond, image, "threshold", 1.0, threshold=0.99, bos_cap=0.0)
    assert torch.equal(out[0, 0], cond[0, 0])


def test_dispatch_errors_name_the_valid_choices():
    cond, image = random_conditioning(), torch.ones(16)
    with pytest.raises(ValueError, match="clustered, concept, linear, threshold"):
        image_guided_conditioning(cond, image, "spiral", 0.5)
    with pytest.raises(ValueError, match="threshold"):
        image_guided_conditioning(cond, image, "threshold", 0.5)
    with pytest.raises(ValueError, match="unknown.*spread"):
        image_guided_conditioning(cond, image, "linear", 0.5, spread=2)
    with pytest.raises(ValueError, match="concept_conditioning"):
        image_guided_conditioning(cond, image, "concept", 0.5, threshold=0.5)


def test_concept_maps_only_the_image_features_along_the_concept():
    width = 8
    conditioning = torch.zeros(1, 5, width)
    conditioning[0, :, 0] = 1.0           # every token points along axis 0 (the concept's direction)
    concept = torch.zeros(2, width)
    concept[0, 0], concept[1, 1] = 1.0, 1.0   # the concept spans axes 0 and 1
    image = torch.tensor([3.0, 4.0, 5.0, 0, 0, 0, 0, 0])
    assert torch.allclose(concept_features(image, concept), torch.tensor([3.0, 4.0, 0, 0, 0, 0, 0, 0]))
    out = image_guided_conditioning(conditioning, image, "concept", 1.0, concept_conditioning=concept,
                                    threshold=0.5)
    assert torch.equal(out[0, 0], conditioning[0, 0])                        # BOS untouched
    assert torch.allclose(out[0, 1:, 2:], torch.zeros(4, width - 2))       # nothing outside the concept's span
    assert not torch.equal(out[0, 1:], conditioning[0, 1:])
    orthogonal = torch.tensor([0, 0, 1.0, 0, 0, 0, 0, 0])                  # no feature along the concept
    assert concept_features(orthogonal, concept) is None
    assert torch.equal(image_guided_conditioning(conditioning, orthogonal, "concept", 1.0,
                                                 concept_conditioning=concept, threshold=0.5), conditioning)
