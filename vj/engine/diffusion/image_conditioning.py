"""Image-embedding guidance of a prompt's conditioning: the token mapping, per-token weights and the mix.

A prompt's conditioning is the text encoder's last hidden state, a (1, L, D) tensor of L = 77 token
vectors. A guide image comes as its CLIP image tower's tokens, a (T, D) tensor: the class token (row 0,
the pooled picture embedding) and the patch tokens, each through the tower's final layer norm and
projection. This follows the image-guidance technique of FlexDiffuse (tim-speed/flexdiffuse,
`guidance.py`), written anew here:

- Mapping (`token_matches`): each image token's cosines with the L text tokens, scaled by CLIP's
  temperature 100, are softmaxed over the text tokens; each text token takes the image token that gives
  it the most probability, and that probability is its similarity s_i in [0, 1]. Text rows that look
  alike (the padding after EOS) share an image token's mass, so they score low. With mapping `pooled`
  only the class token maps (every text token takes it).
- Weights, each in [0, strength]; several methods combine by their element-wise maximum (one pass):
  - linear:    w_i = strength * i / (L - 1): `strength` at the back of the sequence (where style sits)
               falling to 0 at the front.
  - threshold: w_i = strength where s_i >= threshold, 0 elsewhere; `auto` = the mean similarity.
  - clustered: the peaks are the tokens 1..L-2 at or above the mean similarity that are local maxima
               (s_{i-1} <= s_i >= s_{i+1}); the valleys are token 0, token L-1 and, between neighbouring
               peaks p < q, token p + ceil((q - p) / 2). The weight is `strength` at a peak falling
               linearly to 0 at the valleys on either side.
- Mix, per token with its matched image token t_i: c'_i = (1 - w_i) c_i + w_i t_i |c_i| / |t_i|. The
  image token is rescaled to the text token's norm, so the mixed token keeps the magnitude of the token
  space (CLIP's BOS and padding states have very different norms from the word states, and the image
  tower's projected tokens have their own scale).

Token 0 (BOS, the "header" every prompt shares) is never mixed beyond `bos_cap` (0.15; about 0.35
already gives noise).

- concept: vj's own method (the source's concept mapper replaces whole tokens). A second prompt (the
  concept) selects which tokens map. A token's relevance is its best match r_i = max_j cos(c_i, k_j) over
  the concept's rows k_j; tokens i >= 1 with r_i >= threshold (`auto`: CONCEPT_THRESHOLD) get
  strength * s+_i / max_{k selected} s+_k with s+ = max(cos(c_i, e), 0), e the pooled image vector: the
  selected token most like the image gets the full strength, the others less; the rest get 0. A full
  (1, L, D) concept conditioning contributes its rows 1..L-1 (its BOS row is dropped); an (M, D) or (D,)
  tensor is taken row by row as given (recommended: only the concept words' rows, as the padding rows of
  any two prompts resemble each other). The selected tokens take e's projection onto the span of the
  concept's rows (`concept_features`), not the whole e.

Decisions:
- Weights are clamped to [0, 1] (NaN counts as 0) by every weight function and again by `mix`;
  strengths outside [0, 1] saturate, a negative strength means no mixing. w_0 <= the BOS cap.
- Arithmetic runs in float32 (float64 stays float64); the result has the conditioning's dtype and
  device. Weight and similarity vectors are float32. Tokens whose weight is 0 are copied bit for bit,
  and all-zero weights return the conditioning itself, unchanged.
- The image tokens must live in a space comparable with the text tokens: their width must equal the
  token width D, otherwise ValueError. The caller gives a matching pair (the model's own CLIP image
  tower). A text encoder with no matching image tower cannot be guided: same-width tokens from an
  unrelated model would not raise here but would mix in noise, so the caller must refuse them.
"""

import torch

BOS_CAP = 0.15  # token 0 (BOS) is never mixed beyond this
LOGIT_SCALE = 100.0  # CLIP's trained temperature: the scale of the cosines before the softmax
CONCEPT_THRESHOLD = 0.2  # concept's `auto`: the cosine a token needs with the concept's words
METHODS = ("clustered", "concept", "linear", "threshold")
MAPPINGS = ("pooled", "tokens")


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


def _image_rows(image, width, device, dtype):
    """Image vectors as (T, D) rows of the given width, from (D,), (T, D) or (1, T, D); or ValueError."""
    rows = torch.as_tensor(image)
    if rows.dim() == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.dim() == 1:
        rows = rows[None]
    if rows.dim() != 2 or rows.shape[0] == 0:
        raise ValueError(f"image tokens must have shape (D,), (T, D) or (1, T, D), not {tuple(rows.shape)}")
    if rows.shape[1] != width:
        raise ValueError(
            f"image embedding width {rows.shape[1]} does not match the token width {width}: "
            "use the image tower of the text encoder's own CLIP pair"
        )
    rows = rows.to(device=device, dtype=dtype)
    if not torch.isfinite(rows).all() or not bool((rows.norm(dim=-1) > 0).all()):
        raise ValueError("image embedding must be finite and nonzero")
    return rows


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


def token_matches(conditioning, image_tokens):
    """(similarity (L,) float32, index (L,) int64): the image token that fits each text token best, and how well.

    Each image token's cosines with the text tokens, times LOGIT_SCALE, are softmaxed over the text tokens; a
    text token's similarity is the largest probability any image token gives it (ties: the first image token)."""
    tokens = _tokens(conditioning)
    dtype = _compute_dtype(tokens.dtype)
    image = _image_rows(image_tokens, tokens.shape[-1], tokens.device, dtype)
    probability = (LOGIT_SCALE * _cosine(image, tokens.to(dtype))).softmax(dim=1)  # (T, L): over the text tokens
    similarity, index = probability.max(dim=0)
    return similarity.float(), index


def _threshold(similarity, threshold):
    """The threshold as a number: `auto` is the mean similarity."""
    if threshold == "auto":
        return float(similarity.mean()) if similarity.numel() else 0.0
    if isinstance(threshold, str):
        raise ValueError(f"threshold must be a number or 'auto', not {threshold!r}")
    return float(threshold)


def linear_weights(length, strength, device=None):
    """(length,) reverse linspace on `device` (None: the default device): `strength` at the back falling to 0 at
    the front; BOS capped."""
    if length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    ramp = torch.arange(length, dtype=torch.float32, device=device) / max(length - 1, 1)
    return _finish(ramp * float(strength))


def threshold_weights(similarity, strength, threshold="auto"):
    """`strength` where similarity >= threshold (`auto`: the mean similarity), 0 elsewhere; clamped, BOS capped."""
    s = torch.nan_to_num(torch.as_tensor(similarity).float(), nan=0.0)
    limit = _threshold(s, threshold)
    return _finish(torch.where(s >= limit, float(strength), 0.0))


def cluster_peaks(similarity):
    """(P,) positions of the peaks: tokens 1..L-2 at or above the mean similarity that are local maxima."""
    s = torch.nan_to_num(torch.as_tensor(similarity).float(), nan=0.0)
    if s.numel() < 3:
        return torch.zeros(0, dtype=torch.long, device=s.device)
    middle = s[1:-1]
    peak = (middle >= s.mean()) & (s[:-2] <= middle) & (middle >= s[2:])
    return torch.nonzero(peak)[:, 0] + 1


def clustered_weights(similarity, strength):
    """`strength` at each peak falling linearly to 0 at the valleys beside it (token 0, token L-1 and
    p + ceil((q - p) / 2) between peaks p < q); overlaps take the larger weight; BOS capped."""
    s = torch.as_tensor(similarity)
    length = s.shape[0]
    peaks = cluster_peaks(s)
    if peaks.numel() == 0:
        return _finish(torch.zeros(length, device=s.device))
    middles = peaks[:-1] + (peaks[1:] - peaks[:-1] + 1) // 2
    left = torch.cat([peaks.new_zeros(1), middles])[:, None]
    right = torch.cat([middles, peaks.new_full((1,), length - 1)])[:, None]
    at = peaks[:, None]
    position = torch.arange(length, device=s.device)[None, :]
    rise = torch.where(position >= at, 1.0, (position - left) / (at - left).clamp_min(1))
    fall = torch.where(position <= at, 1.0, (right - position) / (right - at).clamp_min(1))
    tents = torch.minimum(rise, fall).clamp(0.0, 1.0)  # (P, L): each peak's slopes down to its valleys
    return _finish(tents.amax(dim=0) * float(strength))


def combined_weights(similarity, methods, strength, threshold="auto"):
    """The element-wise maximum of the weights of `methods` (linear, threshold, clustered) on one similarity."""
    s = torch.as_tensor(similarity).float()
    made = {
        "linear": lambda: linear_weights(s.shape[0], strength, s.device),
        "threshold": lambda: threshold_weights(s, strength, threshold),
        "clustered": lambda: clustered_weights(s, strength),
    }
    return torch.stack([made[m]() for m in methods]).amax(dim=0)


def concept_weights(conditioning, concept_conditioning, image_embedding, strength, threshold="auto"):
    """Tokens (not BOS) matching the concept at least `threshold` (a cosine; `auto`: CONCEPT_THRESHOLD) get
    strength scaled by their cosine with the image vector relative to the best selected token's."""
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
    e = _image_rows(image_embedding, tokens.shape[-1], tokens.device, dtype)
    if e.shape[0] != 1:
        raise ValueError(f"concept takes one image vector (D,), not {e.shape[0]}")
    similarity = _cosine(tokens.to(dtype), e)[:, 0].float()
    relevance = _cosine(tokens.to(dtype), concept.to(device=tokens.device, dtype=dtype)).amax(dim=1).float()
    selected = relevance >= (CONCEPT_THRESHOLD if threshold == "auto" else float(threshold))
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


def mix(conditioning, targets, weights, bos_cap=BOS_CAP):
    """Per token (1 - w_i) c_i + w_i t_i |c_i| / |t_i|, targets t (D,) for every token or (L, D) one per token;
    w in [0, 1], w_0 <= bos_cap; w_i = 0 keeps c_i bit-identical."""
    tokens = _tokens(conditioning)
    length, width = tokens.shape
    dtype = _compute_dtype(conditioning.dtype)
    t = _image_rows(targets, width, conditioning.device, dtype)
    if t.shape[0] not in (1, length):
        raise ValueError(f"targets must have shape ({width},) or ({length}, {width}), not {tuple(t.shape)}")
    w = torch.nan_to_num(torch.as_tensor(weights).to(device=conditioning.device, dtype=torch.float32), nan=0.0)
    if w.shape != (length,):
        raise ValueError(f"weights must have shape ({length},), not {tuple(w.shape)}")
    w = w.clamp(0.0, 1.0)
    w[0] = w[0].clamp(max=max(0.0, min(1.0, float(bos_cap))))
    if not bool((w > 0).any()):
        return conditioning
    c = conditioning.to(dtype)
    target = t / t.norm(dim=-1, keepdim=True) * c.norm(dim=-1, keepdim=True)
    wd = w.to(dtype)[:, None]
    mixed = ((1.0 - wd) * c + wd * target).to(conditioning.dtype)
    return torch.where((w > 0)[:, None], mixed, conditioning)


OPTIONS = {  # method -> (required, optional) options besides bos_cap
    "linear": ((), ("mapping",)),
    "threshold": ((), ("mapping", "threshold")),
    "clustered": ((), ("mapping",)),
    "concept": (("concept_conditioning",), ("threshold",)),
}


def _methods(method):
    """`method` (a name or several) as a tuple of known names; concept only alone; or ValueError."""
    methods = (method,) if isinstance(method, str) else tuple(method)
    unknown = [m for m in methods if m not in OPTIONS]
    if unknown or not methods:
        raise ValueError(
            f"unknown image guidance method {unknown[0] if unknown else method!r}; valid: {', '.join(METHODS)}"
        )
    if len(set(methods)) != len(methods) or ("concept" in methods and len(methods) > 1):
        raise ValueError(f"methods {', '.join(methods)}: each at most once, and concept only alone")
    return methods


def image_guided_conditioning(conditioning, image_tokens, method, strength, **options):
    """The conditioning mixed with the image tokens (T, D) by `method` (a name, or several linear/threshold/
    clustered combined by their largest weight); options: the methods' own plus bos_cap."""
    methods = _methods(method)
    bos_cap = options.pop("bos_cap", BOS_CAP)
    required = sorted({n for m in methods for n in OPTIONS[m][0]})
    allowed = {n for m in methods for n in sum(OPTIONS[m], ())}
    missing = [name for name in required if name not in options]
    unknown = sorted(set(options) - allowed)
    if missing or unknown:
        raise ValueError(
            f"method {'+'.join(methods)}: missing {missing}, unknown {unknown}; "
            f"options: {', '.join(sorted(allowed) + ['bos_cap'])}"
        )
    tokens = _tokens(conditioning)
    image = _image_rows(image_tokens, tokens.shape[-1], tokens.device, _compute_dtype(tokens.dtype))
    threshold = options.get("threshold", "auto")
    if methods == ("concept",):
        concept = torch.as_tensor(options["concept_conditioning"])
        weights = concept_weights(tokens, concept, image[0], strength, threshold)
        rows = _tokens(concept)[1:] if concept.dim() == 3 else concept.reshape(-1, concept.shape[-1])
        features = concept_features(image[0], rows)
        return conditioning if features is None else mix(conditioning, features, weights, bos_cap=bos_cap)
    mapping = options.get("mapping", "tokens")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, not {mapping!r}")
    if mapping == "pooled":
        image = image[:1]
    similarity, index = token_matches(tokens, image)
    weights = combined_weights(similarity, methods, strength, threshold)
    return mix(conditioning, image[index], weights, bos_cap=bos_cap)
