"""Image-embedding guidance of a prompt's conditioning: per-token weights and the mix.

A prompt's conditioning is the text encoder's last hidden state, a (1, L, D) tensor of L = 77 token
vectors. A guide image's CLIP image embedding e (D,) is mapped onto those tokens and mixed in, token
by token, with a weight w_i in [0, 1]:

    c'_i = (1 - w_i) * c_i + w_i * (e / |e|) * |c_i|

The image embedding is rescaled to each token's own norm, so the mixed token keeps the magnitude of
the token space (CLIP's BOS and padding states have very different norms from the word states).
Token 0 (BOS, the "header" every prompt shares) is never mixed beyond `BOS_CAP` (0.15; about 0.35
already gives noise). The mapping is by cosine similarity s_i = cos(c_i, e), and the weights come
from one of the seed's methods:

- linear:    w_i = strength * i / (L - 1), a reverse linspace: `strength` at the back of the
             sequence falling to 0 at the front (the back of the sequence carries style).
- threshold: w_i = strength where s_i >= threshold, `floor` elsewhere.
- clustered: the `count` tokens with the largest s_i (BOS is not a candidate: it could not carry the
             weight) get `strength`; a token at distance d <= spread from a peak gets
             strength * (1 - d / (spread + 1)); where neighbourhoods overlap the largest weight wins.
- concept:   a second prompt (the concept) selects which tokens map. A token's relevance is its
             best match r_i = max_j cos(c_i, k_j) over the concept's rows k_j; tokens i >= 1 with
             r_i >= threshold are selected and get strength * s+_i / max_{k selected} s+_k with
             s+ = max(s, 0): the selected token most similar to the image gets the full strength,
             the others proportionally less; unselected tokens and BOS get 0. A full (1, L, D)
             concept conditioning contributes its rows 1..L-1 (its BOS row is dropped); an (M, D)
             or (D,) tensor is taken row by row as given, so the caller can pass only the concept
             word's token rows (recommended: the padding rows after EOS of any two prompts resemble
             each other) or a single pooled vector (the "pooled" variant). The concept also selects
             which image features map: the selected tokens take e's projection onto the span of the
             concept's rows (`concept_features`), not the whole e.

Decisions:
- Weights are clamped to [0, 1] (NaN counts as 0) by every weight function and again by `mix`;
  strengths outside [0, 1] saturate, a negative strength means no mixing. w_0 <= the BOS cap.
- Arithmetic runs in float32 (float64 stays float64); the result has the conditioning's dtype and
  device. Weight and similarity vectors are float32. Tokens whose weight is 0 are copied bit for bit,
  and all-zero weights return the conditioning itself, unchanged.
- The image embedding must live in a space comparable with the tokens: its width must equal the
  token width D, otherwise ValueError. The caller gives a matching pair (the model's own CLIP image
  tower). A text encoder with no matching image tower cannot be guided: a same-width embedding from
  an unrelated model would not raise here but would mix in noise, so the caller must refuse it.
"""

import torch

BOS_CAP = 0.15   # token 0 (BOS) is never mixed beyond this
METHODS = ("clustered", "concept", "linear", "threshold")


def _compute_dtype(dtype):
    """float32, or float64 when the input is float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tokens(conditioning):
    """The (L, D) token rows of a (1, L, D) or (L, D) conditioning."""
    if not torch.is_tensor(conditioning) or not conditioning.is_floating_point():
        raise ValueError("conditioning must be a floating-point tensor of shape (1, L, D) or (L, D)")
    if conditioning.dim() == 3 and conditioning.shape[0] == 1:
        return conditioning[0]
    if conditioning.dim() == 2:
        return conditioning
    raise ValueError(f"conditioning must have shape (1, L, D) or (L, D), not {tuple(conditioning.shape)}")


def _image_vector(image_embedding, width, device, dtype):
    """The image embedding as a (D,) vector of the given width, or ValueError."""
    e = torch.as_tensor(image_embedding)
    if e.dim() == 2 and e.shape[0] == 1:
        e = e[0]
    if e.dim() != 1:
        raise ValueError(f"image embedding must have shape (D,) or (1, D), not {tuple(e.shape)}")
    if e.shape[0] != width:
        raise ValueError(f"image embedding width {e.shape[0]} does not match the token width {width}: "
                         "use the image tower of the text encoder's own CLIP pair")
    e = e.to(device=device, dtype=dtype)
    if not torch.isfinite(e).all() or e.norm() == 0:
        raise ValueError("image embedding must be finite and nonzero")
    return e


def _finish(weights):
    """Weights with NaN -> 0, clamped to [0, 1], BOS capped at BOS_CAP."""
    w = torch.nan_to_num(weights.float(), nan=0.0).clamp(0.0, 1.0)
    if w.numel():
        w[0] = w[0].clamp(max=BOS_CAP)
    return w


def _cosine(rows, vectors, eps=1e-8):
    """(N, M) cosine similarities of rows (N, D) with vectors (M, D)."""
    a = rows / rows.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(eps)
    return a @ b.T


def token_similarity(conditioning, image_embedding):
    """(L,) float32 cosine similarity of each token vector with the image embedding."""
    tokens = _tokens(conditioning)
    dtype = _compute_dtype(tokens.dtype)
    e = _image_vector(image_embedding, tokens.shape[-1], tokens.device, dtype)
    return _cosine(tokens.to(dtype), e[None])[:, 0].float()


def linear_weights(length, strength):
    """(length,) reverse linspace: `strength` at the back falling to 0 at the front; BOS capped."""
    if length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    ramp = torch.arange(length, dtype=torch.float32) / max(length - 1, 1)
    return _finish(ramp * float(strength))


def threshold_weights(similarity, strength, threshold, floor=0.0):
    """`strength` where similarity >= threshold, `floor` elsewhere; clamped, BOS capped."""
    s = torch.as_tensor(similarity).float()
    high, low = torch.full_like(s, float(strength)), torch.full_like(s, float(floor))
    return _finish(torch.where(s >= threshold, high, low))


def clustered_weights(similarity, strength, count=3, spread=3):
    """The `count` most similar tokens (not BOS) get `strength`, neighbours within `spread` less; BOS capped."""
    if spread < 0:
        raise ValueError(f"spread must be >= 0, not {spread}")
    s = torch.nan_to_num(torch.as_tensor(similarity).float(), nan=float("-inf"))
    length = s.shape[0]
    weights = torch.zeros(length, device=s.device)
    if count <= 0 or length < 2:
        return _finish(weights)
    order = torch.sort(s[1:], descending=True, stable=True).indices[:count] + 1
    positions = torch.arange(length, device=s.device)
    distance = (positions[None, :] - order[:, None]).abs()
    falloff = (1.0 - distance.float() / (spread + 1)).clamp_min(0.0)
    weights = (falloff * float(strength)).amax(dim=0)
    return _finish(weights)


def concept_weights(conditioning, concept_conditioning, image_embedding, strength, threshold):
    """Tokens (not BOS) matching the concept above `threshold` get strength scaled by relative image similarity."""
    tokens = _tokens(conditioning)
    dtype = _compute_dtype(tokens.dtype)
    concept = torch.as_tensor(concept_conditioning)
    if concept.dim() == 3:
        concept = _tokens(concept)[1:]
    elif concept.dim() == 1:
        concept = concept[None]
    if concept.dim() != 2 or concept.shape[0] == 0:
        raise ValueError(f"concept conditioning must be (1, L, D), (M, D) or (D,), not {tuple(concept.shape)}")
    if concept.shape[-1] != tokens.shape[-1]:
        raise ValueError(f"concept width {concept.shape[-1]} does not match the token width {tokens.shape[-1]}")
    similarity = token_similarity(tokens, image_embedding)
    relevance = _cosine(tokens.to(dtype), concept.to(device=tokens.device, dtype=dtype)).amax(dim=1).float()
    selected = relevance >= threshold
    selected[0] = False
    positive = similarity.clamp_min(0.0) * selected
    top = positive.max() if positive.numel() else positive.new_zeros(())
    if top <= 0:
        return _finish(torch.zeros_like(positive))
    return _finish(positive / top * float(strength))


def concept_features(image_embedding, concept_rows):
    """The image embedding's component in the span of the concept's token rows (M, D): the features it selects;
    None where the image has (almost) none of them."""
    rows = torch.as_tensor(concept_rows).float()
    e = torch.as_tensor(image_embedding).reshape(-1).to(device=rows.device, dtype=torch.float32)
    basis, _ = torch.linalg.qr(rows.T)  # (D, M) orthonormal columns spanning the rows
    projected = basis @ (basis.T @ e)
    return None if projected.norm() <= 1e-6 * e.norm() else projected


def mix(conditioning, image_embedding, weights, bos_cap=BOS_CAP):
    """Per token (1 - w_i) c_i + w_i e |c_i| / |e|, w in [0, 1], w_0 <= bos_cap; w_i = 0 keeps c_i bit-identical."""
    tokens = _tokens(conditioning)
    length, width = tokens.shape
    dtype = _compute_dtype(conditioning.dtype)
    e = _image_vector(image_embedding, width, conditioning.device, dtype)
    w = torch.nan_to_num(torch.as_tensor(weights).to(device=conditioning.device, dtype=torch.float32), nan=0.0)
    if w.shape != (length,):
        raise ValueError(f"weights must have shape ({length},), not {tuple(w.shape)}")
    w = w.clamp(0.0, 1.0)
    w[0] = w[0].clamp(max=max(0.0, min(1.0, float(bos_cap))))
    if not bool((w > 0).any()):
        return conditioning
    c = conditioning.to(dtype)
    target = e / e.norm() * c.norm(dim=-1, keepdim=True)
    wd = w.to(dtype)[:, None]
    mixed = ((1.0 - wd) * c + wd * target).to(conditioning.dtype)
    return torch.where((w > 0)[:, None], mixed, conditioning)


OPTIONS = {  # method -> (required, optional) options besides bos_cap
    "linear": ((), ()),
    "threshold": (("threshold",), ("floor",)),
    "clustered": ((), ("count", "spread")),
    "concept": (("concept_conditioning", "threshold"), ()),
}


def image_guided_conditioning(conditioning, image_embedding, method, strength, **options):
    """The conditioning mixed with the image embedding by `method`; options: the method's own plus bos_cap."""
    if method not in OPTIONS:
        raise ValueError(f"unknown image guidance method {method!r}; valid: {', '.join(METHODS)}")
    bos_cap = options.pop("bos_cap", BOS_CAP)
    required, optional = OPTIONS[method]
    missing = [name for name in required if name not in options]
    unknown = sorted(set(options) - set(required) - set(optional))
    if missing or unknown:
        valid = ", ".join(required + optional + ("bos_cap",))
        raise ValueError(f"method {method!r}: missing {missing}, unknown {unknown}; options: {valid}")
    tokens = _tokens(conditioning)
    if method == "linear":
        weights = linear_weights(tokens.shape[0], strength)
    elif method == "threshold":
        weights = threshold_weights(token_similarity(tokens, image_embedding), strength, **options)
    elif method == "clustered":
        weights = clustered_weights(token_similarity(tokens, image_embedding), strength, **options)
    else:
        concept = torch.as_tensor(options["concept_conditioning"])
        weights = concept_weights(tokens, concept, image_embedding, strength, options["threshold"])
        rows = _tokens(concept)[1:] if concept.dim() == 3 else concept.reshape(-1, concept.shape[-1])
        features = concept_features(image_embedding, rows)
        if features is None:
            return conditioning
        image_embedding = features
    return mix(conditioning, image_embedding, weights, bos_cap=bos_cap)
