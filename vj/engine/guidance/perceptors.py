"""CLIP perceptors for guidance: open_clip models that embed pixels (differentiably), texts and pictures.

CLIP guidance (pytti's semantics) scores cutouts of a frame against prompts by the spherical distance of
their CLIP embeddings. A `Perceptor` wraps one open_clip model for that: it takes pixels in [0, 1] at the
model's input size, applies the model's own mean/std normalisation, and returns L2-normalised float32
embeddings, with gradients flowing to the pixels only (the model is frozen, in eval mode). Prompts repeat
every frame, so text and picture embeddings are cached.

Models are named as open_clip names them (`ViT-B-32/openai`, `ViT-B-32:laion2b_s34b_b79k`) or by pytti's
flags (`ViTB32`, `RN50`, ...). Their weights come from the Hugging Face cache with no network at all; when
they are missing, one line says how to get them, within seconds (the hub is probed as vj.engine.fetching does).
`tiny_perceptor` is a small CLIP with seeded random weights built in-process (open_clip's architecture and
its bundled BPE tokenizer), for tests and CPU try-outs.
"""

import collections
import difflib
import hashlib
import os

import numpy as np
import torch
import torch.nn.functional as F

from vj.engine import fetching
from vj.engine.errors import EngineError
from vj.engine.vocabulary import PYTTI_FLAGS

# A CLIP small enough to run 32 cutouts in milliseconds on a CPU: 64-pixel input, 2 layers per tower.
TINY_CONFIG = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=64, patch_size=8, width=64, layers=2, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)
PICTURE_CACHE_SIZE = 256  # picture embeddings kept (most recently used); a long show may embed many frames


class PerceptorError(EngineError):
    """A perceptor that cannot be named or loaded; the message says why and what to do."""


class Perceptor:
    """One frozen CLIP model: differentiable embeddings of pixels, cached embeddings of texts and pictures."""

    def __init__(self, name, model, tokenizer):
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        config = model.visual.preprocess_cfg  # set by open_clip's create_model: size, mean, std
        size = config["size"]
        self.input_size = size if isinstance(size, int) else size[0]
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self._mean = torch.tensor(config["mean"], device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(config["std"], device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self._texts = {}
        self._pictures = collections.OrderedDict()

    def __repr__(self):
        return f"Perceptor({self.name!r}, input_size={self.input_size}, {self.device}, {str(self.dtype)[6:]})"

    def encode_image(self, pixels):
        """(N, 3, S, S) pixels in [0, 1], S = input_size -> (N, D) normalised float32, differentiable."""
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, self.input_size, self.input_size):
            raise ValueError(
                f"{self.name} takes (N, 3, {self.input_size}, {self.input_size}) pixels, not {tuple(pixels.shape)}"
            )
        normalised = (pixels.to(self.device, self.dtype) - self._mean) / self._std
        return F.normalize(self.model.encode_image(normalised).float(), dim=-1)

    def encode_text(self, texts):
        """list of N texts -> (N, D) normalised float32, no grad; each text is encoded once (cached)."""
        new = [text for text in dict.fromkeys(texts) if text not in self._texts]
        if new:
            with torch.no_grad():
                tokens = self.tokenizer(new).to(self.device)
                self._texts.update(zip(new, F.normalize(self.model.encode_text(tokens).float(), dim=-1)))
        if not texts:
            return self.encode_text([""])[:0]
        return torch.stack([self._texts[text] for text in texts])

    def _picture_pixels(self, rgb):
        """uint8 H x W x 3 picture -> (1, 3, S, S) pixels in [0, 1], squashed whole to input_size."""
        rgb = np.ascontiguousarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"a picture is a uint8 H x W x 3 array, not {rgb.dtype} {rgb.shape}")
        pixels = torch.from_numpy(np.array(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(
            pixels, size=(self.input_size, self.input_size), mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)

    def encode_picture(self, rgb):
        """uint8 H x W x 3 picture, squashed whole to input_size -> (D,) normalised float32, no grad; cached."""
        rgb = np.ascontiguousarray(rgb)
        key = (rgb.shape, hashlib.blake2b(rgb.data, digest_size=16).digest())
        if key in self._pictures:
            self._pictures.move_to_end(key)
        else:
            with torch.no_grad():
                self._pictures[key] = self.encode_image(self._picture_pixels(rgb))[0]
            if len(self._pictures) > PICTURE_CACHE_SIZE:
                self._pictures.popitem(last=False)
        return self._pictures[key]

    def encode_picture_tokens(self, rgb):
        """uint8 H x W x 3 picture, squashed whole to input_size -> (1 + P, D) float32, no grad: the class token
        (the picture's embedding, unnormalised) and the P patch tokens, all through the tower's final layer norm
        and projection (open_clip gives the patch tokens normed but unprojected). ViT towers with a class token
        only."""
        visual = self.model.visual
        if (
            getattr(visual, "pool_type", None) != "tok"
            or visual.attn_pool is not None
            or visual.final_ln_after_pool
            or visual.proj is None
        ):
            raise ValueError(f"{self.name}: its image tower has no class token and projected patch tokens")
        pixels = (self._picture_pixels(rgb).to(self.dtype) - self._mean) / self._std
        kept, visual.output_tokens = visual.output_tokens, True
        try:
            with torch.no_grad():
                pooled, patches = visual(pixels)
        finally:
            visual.output_tokens = kept
        return torch.cat([pooled[:, None], patches @ visual.proj], dim=1)[0].float()


def _did_you_mean(word, choices):
    """' (did you mean 'X', 'Y'?)' for the choices closest to `word` ignoring case, or ''."""
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), lowered, n=3)
    return f" (did you mean {', '.join(repr(lowered[c]) for c in close)}?)" if close else ""


def _check(name, tag):
    """The canonical (name, tag) of an open_clip model with pretrained weights; PerceptorError if unknown."""
    import open_clip

    known = open_clip.list_models()
    name = name.strip().replace("/", "-")  # OpenAI's names: ViT-B/32
    if name not in known:
        raise PerceptorError(
            f"unknown CLIP model '{name}'{_did_you_mean(name, [*PYTTI_FLAGS, *known])}: use a pytti flag "
            f"({', '.join(PYTTI_FLAGS)}) or an open_clip name with its weights, NAME/TAG (the names: "
            "python -c 'import open_clip; print(open_clip.list_pretrained())')"
        )
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        raise PerceptorError(
            f"CLIP model '{name}' has no pretrained weights in open_clip; "
            "pick one that has: python -c 'import open_clip; print(open_clip.list_pretrained())'"
        )
    if tag is None:
        if "openai" not in tags:
            raise PerceptorError(f"CLIP model '{name}': name its weights as {name}/TAG, TAG one of {', '.join(tags)}")
        return name, "openai"
    tag = tag.strip()
    canonical = {t.lower().replace("-", "_"): t for t in tags}.get(tag.lower().replace("-", "_"))
    if canonical is None:
        raise PerceptorError(
            f"CLIP model '{name}' has no weights '{tag}'{_did_you_mean(tag, tags)}; its weights: {', '.join(tags)}"
        )
    return name, canonical


def parse_perceptor(text):
    """A pytti flag, 'NAME/TAG', 'NAME:TAG' or a bare NAME (its openai weights) -> (open_clip name, tag)."""
    import open_clip

    text = text.strip()
    if text in PYTTI_FLAGS:
        return PYTTI_FLAGS[text]
    if text.replace("/", "-") in open_clip.list_models():  # a bare name, OpenAI's ViT-B/32 too
        return _check(text, None)
    name, separator, tag = max(text.rpartition("/"), text.rpartition(":"), key=lambda parts: len(parts[0]))
    if not separator:
        return _check(text, None)
    return _check(name, tag)


def _weights(name, tag):
    """The cached weights file of name/tag, downloaded first if the hub can be reached; PerceptorError if not.

    Every open_clip tag names a hub repo (`hf_hub`), which open_clip prefers to its URLs; the file is
    open_clip's safetensors alternative first, then the named file, as open_clip looks for them.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip.pretrained import (
        HF_WEIGHTS_NAME,
        _get_safe_alternatives,
        download_pretrained_from_hf,
        get_pretrained_cfg,
    )

    repo, filename = os.path.split(get_pretrained_cfg(name, tag)["hf_hub"])
    files = [*_get_safe_alternatives(filename or HF_WEIGHTS_NAME), filename or HF_WEIGHTS_NAME]
    for file in files:
        path = try_to_load_from_cache(repo, file)
        if isinstance(path, str):
            return path
    missing = (
        f"the weights of CLIP '{name}/{tag}' ({repo}) are not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    )
    how = (
        f"where there is internet run `hf download {repo} {files[0]}` (then copy ~/.cache/huggingface here) "
        "or run vj once with internet; without weights use --model tiny"
    )
    if constants.HF_HUB_OFFLINE:
        raise PerceptorError(f"{missing} and HF_HUB_OFFLINE is set: {how}")
    reason = fetching.hub_unreachable()
    if reason is not None:
        raise PerceptorError(f"{missing} and the hub ({constants.ENDPOINT}) cannot be reached ({reason}): {how}")
    try:
        return download_pretrained_from_hf(repo, filename=filename or None)
    except (OSError, RuntimeError) as exc:
        raise PerceptorError(f"{missing} and could not be downloaded ({_first_line(exc)}): {how}") from None


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_perceptor(name, pretrained, device, dtype=torch.float32):
    """The open_clip model `name` with weights `pretrained` (a tag) from the local cache, frozen, on device."""
    import open_clip

    name, pretrained = _check(name, pretrained)
    path = _weights(name, pretrained)
    config = open_clip.get_pretrained_cfg(name, pretrained)
    try:
        # Loading the file (not the tag) keeps open_clip off the network; the tag's preprocessing and
        # activation come along as overrides. OpenAI's weights need QuickGELU, which open_clip only warns about.
        model = open_clip.create_model(
            name,
            pretrained=path,
            device=device,
            force_quick_gelu=config.get("quick_gelu", False),
            force_preprocess_cfg={key: value for key, value in config.items() if key != "size"},
        )
        model.to(dtype=dtype)
        tokenizer = open_clip.get_tokenizer(name)
    except torch.OutOfMemoryError:
        raise PerceptorError(
            f"out of GPU memory loading CLIP '{name}/{pretrained}' in {str(dtype)[6:]}: use a "
            "smaller perceptor or fewer of them, or --dtype float16"
        ) from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise PerceptorError(f"could not load CLIP '{name}/{pretrained}' from {path}: {_first_line(exc)}") from None
    return Perceptor(f"{name}/{pretrained}", model, tokenizer)


def random_perceptor(name, device, dtype=torch.float32, seed=0):
    """open_clip's architecture `name` with seeded random weights: the compute of the real model (benchmarks)."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None, device=device)
    return Perceptor(f"{name}/random", model.to(dtype=dtype), open_clip.get_tokenizer(name))


def tiny_perceptor(device, dtype=torch.float32, seed=0, embed_dim=TINY_CONFIG["embed_dim"]):
    """A small open_clip CLIP (TINY_CONFIG, embeddings `embed_dim` wide) with weights seeded by `seed` and
    open_clip's bundled tokenizer."""
    import open_clip

    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's random state
        torch.manual_seed(seed)
        model = open_clip.CLIP(**{**TINY_CONFIG, "embed_dim": embed_dim})
    open_clip.set_model_preprocess_cfg(
        model,
        {"size": model.visual.image_size, "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD},
    )
    model.to(device=device, dtype=dtype)
    return Perceptor("tiny", model, open_clip.SimpleTokenizer(context_length=TINY_CONFIG["text_cfg"]["context_length"]))
