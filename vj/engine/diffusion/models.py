"""Model components: real checkpoints (from_pretrained), `tiny` random models, `arch:NAME` random real architectures."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vj.engine.devices import pick_device, resolve_dtype
from vj.engine.errors import ModelError
from vj.engine.fetching import Fetcher
from vj.engine.diffusion.net_fit import CONFIGS, TINY_UNET
from vj.engine.tokenizer import clip_tokenizer

DEFAULT_MODEL = "stabilityai/sd-turbo"
TAESD = "madebyollin/taesd"
_HOW_TO_GET = (
    "where there is internet run `hf download {source}` (then copy ~/.cache/huggingface here), or pass a "
    "local diffusers folder; without weights use --model tiny (random, for trying the app) or "
    "arch:sd-turbo (benchmarks)"
)


@dataclass
class Components:
    """What a frame needs: UNet, VAE, text encoder, tokenizer and scheduler, on one device and dtype."""

    name: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    device: torch.device
    dtype: torch.dtype

    @property
    def vae_scale(self):
        return 2 ** (
            len(self.vae.config.decoder_block_out_channels if self.is_tiny_vae else self.vae.config.block_out_channels)
            - 1
        )

    @property
    def is_tiny_vae(self):
        return type(self.vae).__name__ == "AutoencoderTiny"


def _euler_turbo():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(json.loads((CONFIGS / "sd-turbo" / "scheduler.json").read_text()))


def _random_taesd(tiny):
    from diffusers import AutoencoderTiny

    if tiny:
        vae = AutoencoderTiny(
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        )
        # With default init this decodes to near-black (output ~0 in 0..1); centre it on mid-grey and
        # give it a spread like a random KL decoder's (std ~50 of 255), so a CPU try-out shows texture.
        with torch.no_grad():
            vae.decoder.layers[-1].weight.mul_(8.0)
            vae.decoder.layers[-1].bias.fill_(0.5)
        return vae
    return AutoencoderTiny()  # the default config is TAESD's architecture


def build_tiny():
    """Small UNet, VAE and text encoder with seeded random weights: fast on CPU, for tests and demos.

    The tiny model's own VAE is a small AutoencoderTiny (TAESD's shape): on CPU it is about twice as fast
    as a KL autoencoder of the same width, and speed is what `tiny` is for.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNET)
    autoencoder = _random_taesd(tiny=True)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
        )
    )
    return unet, autoencoder, text_encoder, clip_tokenizer(), _euler_turbo()


def build_architecture(name, vae="auto"):
    """A real architecture from its packaged config, with random weights (benchmarks without downloads)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = CONFIGS / name
    if not folder.is_dir():
        known = ", ".join(f"arch:{p.name}" for p in sorted(CONFIGS.iterdir()))
        raise ModelError(f"unknown architecture 'arch:{name}'; known: {known}")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads((folder / "unet.json").read_text()))
    autoencoder = (
        _random_taesd(tiny=False)
        if vae == "taesd"
        else AutoencoderKL.from_config(json.loads((folder / "vae.json").read_text()))
    )
    text_config = json.loads((folder / "text_encoder.json").read_text())
    text_encoder = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in text_config.items() if k != "architectures"}))
    return unet, autoencoder, text_encoder, clip_tokenizer(pad_token="!"), _euler_turbo()


def _diffusers_class(config, allowed, source, part):
    """The class a diffusers config was saved from (its `_class_name`), if it is one of `allowed`."""
    import diffusers

    name = config.get("_class_name")
    kind = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(kind, type) and issubclass(kind, allowed)):
        raise ModelError(f"'{source}' ({part}): its class '{name}' is not supported here")
    return kind


def _load_pretrained(model, vae):
    """Load a diffusers Stable Diffusion checkpoint (hub id or folder) and optionally another VAE.

    The VAE's and the scheduler's classes are read from their saved configs, as diffusers' pipelines do.
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, EulerDiscreteScheduler, SchedulerMixin, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    def load_vae(source, subfolder, **kw):
        config = AutoencoderKL.load_config(source, subfolder=subfolder, **kw)
        kind = _diffusers_class(config, (AutoencoderKL, AutoencoderTiny), source, "vae")
        return kind.from_pretrained(source, subfolder=subfolder, **kw)

    def tokenizer(**kw):
        loaded = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **kw)
        # transformers 5 builds an empty tokenizer, without an error, when the files are missing
        if len(loaded.get_vocab()) <= len(set(loaded.all_special_tokens)):
            raise OSError(f"'{model}' has no tokenizer files")
        return loaded

    def scheduler(**kw):
        config = EulerDiscreteScheduler.load_config(model, subfolder="scheduler", **kw)
        return _diffusers_class(config, SchedulerMixin, model, "scheduler").from_config(config)

    if (Path(model) / "model_index.json").is_file():
        index = json.loads((Path(model) / "model_index.json").read_text())
        if "text_encoder_2" in index:
            raise ModelError(
                f"'{model}' is an SDXL checkpoint; vj's engine supports SD 1.x/2.x-shaped "
                "checkpoints (sd-turbo, LCM fine-tunes) so far"
            )
    fetch = Fetcher(_HOW_TO_GET)
    unet = fetch(model, "unet", lambda **kw: UNet2DConditionModel.from_pretrained(model, subfolder="unet", **kw))
    if unet.config.get("addition_embed_type") == "text_time":
        raise ModelError(
            f"'{model}' is an SDXL checkpoint; vj's engine supports SD 1.x/2.x-shaped "
            "checkpoints (sd-turbo, LCM fine-tunes) so far"
        )
    if vae == "auto":
        autoencoder = fetch(model, "vae", lambda **kw: load_vae(model, "vae", **kw))
    else:
        source = TAESD if vae == "taesd" else vae
        autoencoder = fetch(source, "vae", lambda **kw: load_vae(source, None, **kw))
    text_encoder = fetch(
        model, "text_encoder", lambda **kw: CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **kw)
    )
    return unet, autoencoder, text_encoder, fetch(model, "tokenizer", tokenizer), fetch(model, "scheduler", scheduler)


def load_components(model=DEFAULT_MODEL, vae="auto", device="auto", dtype="auto"):
    """Components for `model`: 'tiny', 'arch:NAME', a hub id or a local folder, on `device` in `dtype` (--device and
    --dtype values: vj.engine.devices)."""
    device = pick_device(device)
    dtype = resolve_dtype(dtype, device)
    if model == "tiny":
        if vae not in ("auto", "taesd"):
            raise ModelError(
                f"--vae {vae}: the tiny model has its own small TAESD-shaped VAE; use 'auto' or 'taesd' with it"
            )
        parts = build_tiny()
    elif model.startswith("arch:"):
        parts = build_architecture(model[5:], vae)
    elif "/" in model or Path(model).exists():
        parts = _load_pretrained(model, vae)
    else:
        raise ModelError(
            f"unknown model '{model}': use a hub id like {DEFAULT_MODEL}, a local diffusers folder, "
            "'tiny' or 'arch:sd-turbo'"
        )
    unet, autoencoder, text_encoder, tokenizer, scheduler = parts
    try:
        for module in (unet, autoencoder, text_encoder):
            # nn.Module.to, not diffusers' override: that one warns about fp32-only modules these models lack
            torch.nn.Module.to(module, device=device, dtype=dtype).eval().requires_grad_(False)
    except torch.OutOfMemoryError:
        raise ModelError(
            f"out of GPU memory loading '{model}' in {str(dtype)[6:]}: close other programs on the "
            "GPU, use --dtype float16 and --vae taesd, or a smaller model"
        ) from None
    autoencoder.to(memory_format=torch.channels_last)  # faster convolutions on CPU too (oneDNN), ~1.5x here
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)  # on CPU the UNet gains nothing from it
    return Components(model, unet, autoencoder, text_encoder, tokenizer, scheduler, device, dtype)


def _skip_cuda_home_probe(record):
    """False for the warning of torch's CUDA_HOME probe ('No CUDA runtime is found'), which inductor's import
    of torch.utils.cpp_extension logs when compiling on a machine without a GPU: it says nothing about the
    frames. Its other warnings pass."""
    return record.funcName != "_find_cuda_home"


def compile_components(components, backend="inductor"):
    """torch.compile the UNet and the VAE's encoder and decoder as whole graphs (the first frames are slow).

    Whole-graph compilation (`fullgraph=True`) fails loudly on a graph break instead of silently
    running part of the frame in Python; `max-autotune` picks the fastest kernels for the fixed frame size.
    """
    logging.getLogger("torch.utils.cpp_extension").addFilter(_skip_cuda_home_probe)

    def compiled(module):
        return torch.compile(
            module, backend=backend, fullgraph=True, mode="max-autotune" if backend == "inductor" else None
        )

    components.unet = compiled(components.unet)
    components.vae.encoder = compiled(components.vae.encoder)
    components.vae.decoder = compiled(components.vae.decoder)
    return components
