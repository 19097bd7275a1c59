"""Whether a ControlNet fits a base model, from their saved configs alone (no torch, no weights): `vj check` refuses
a net that cannot steer the preset's model before anything loads, and the engine checks the loaded nets again.

A ControlNet is a copy of its UNet's encoder half: its residuals fit a UNet with the same cross-attention width
(the text encoder's: 768 for SD 1.x, 1024 for SD 2.x), input channels, encoder blocks and layers per block.
"""

import json
from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"
# the tiny model's UNet (vj.engine.diffusion.models.build_tiny) and its ControlNet (controlnet.tiny_controlnet)
TINY_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=2,  # diffusers' legacy name for the number of heads: 2 heads of 32 channels
)
TINY_CONTROLNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    in_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=2,
    norm_num_groups=32,
    conditioning_embedding_out_channels=(8, 8, 16, 16),
)
ARCHITECTURES = {"sd21": "sd-turbo"}  # arch:NAME of a ControlNet -> the packaged UNet architecture it copies
FIT_KEYS = ("in_channels", "block_out_channels", "down_block_types", "layers_per_block")
# the base models by cross-attention width, and a model of vj's that each fits
_FAMILIES = {
    768: ("SD 1.x", "an SD 1.5-based model such as SimianLuo/LCM_Dreamshaper_v7"),
    1024: ("SD 2.x", "an SD 2.1-based model such as stabilityai/sd-turbo"),
    2048: ("SDXL", "no model of vj's yet (SDXL is not supported)"),
    32: ("tiny", "--model tiny"),
}


def _family(width):
    return _FAMILIES.get(width, (f"width-{width}", f"models with cross-attention width {width}"))


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def fit_problem(net, unet):
    """Why a ControlNet with config `net` cannot steer a UNet with config `unet` (mappings), in one line naming what
    would fit; None when it fits."""
    width, wanted = net.get("cross_attention_dim"), unet.get("cross_attention_dim")
    if width != wanted:
        (family, fits), (model_family, _) = _family(width), _family(wanted)
        return (
            f"this ControlNet is {family}-based (cross-attention {width}) and cannot steer this {model_family}-shaped "
            f"model (cross-attention {wanted}): it fits {fits}; this model needs {model_family}-based ControlNets"
        )
    for key in FIT_KEYS:
        theirs, ours = _plain(net.get(key)), _plain(unet.get(key))
        if theirs != ours:
            return (
                f"this ControlNet's {key} ({theirs}) differs from the model UNet's ({ours}): its residuals would not "
                "fit; use a ControlNet trained for this model's architecture"
            )
    return None


def _saved(source, subfolder=None):
    """The config.json of a diffusers model saved in a folder or in the Hugging Face cache, or None when it is not
    here (no network: `vj check` only reads what is on the disk)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / subfolder / "config.json" if subfolder else folder / "config.json"
    elif source.count("/") == 1:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, f"{subfolder}/config.json" if subfolder else "config.json")
        path = Path(found) if isinstance(found, str) else None
    else:
        return None
    try:
        return json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None


def unet_config(model):
    """The UNet config of base model `model` (tiny, arch:NAME, a hub id or a folder), or None when it is not here."""
    if model == "tiny":
        return dict(TINY_UNET)
    if model.startswith("arch:"):
        path = CONFIGS / model[5:] / "unet.json"
        return json.loads(path.read_text()) if path.is_file() else None
    return _saved(model, "unet")


def controlnet_config(name):
    """The config of ControlNet `name` (tiny, arch:NAME, a hub id or a folder) as far as fitting goes, or None when
    it is not here."""
    if name == "tiny":
        return dict(TINY_CONTROLNET)
    if name.startswith("arch:"):
        arch = ARCHITECTURES.get(name[5:])
        return None if arch is None else unet_config(f"arch:{arch}")
    return _saved(name)


def name_problem(name):
    """Why `name` cannot name a ControlNet (its form only), or None."""
    if name == "tiny" or "/" in name or Path(name).expanduser().exists():
        return None
    if name.startswith("arch:"):
        if name[5:] in ARCHITECTURES:
            return None
        return f"unknown ControlNet architecture '{name}'; known: {', '.join(f'arch:{a}' for a in ARCHITECTURES)}"
    return (
        f"unknown ControlNet '{name}': use a hub id (e.g. thibaud/controlnet-sd21-canny-diffusers), a local diffusers "
        "folder, 'tiny' or 'arch:sd21'"
    )


def net_for_model(name, model):
    """The ControlNet a show loads for a preset's net `name` with base model `model`: with the tiny model every net is
    `tiny`, with an `arch:` model the random net of its architecture (as the perceptors and the depth model)."""
    if model == "tiny":
        return "tiny"
    if model.startswith("arch:"):
        return next((f"arch:{net}" for net, unet in ARCHITECTURES.items() if model == f"arch:{unet}"), name)
    return name


def preset_fit_problem(name, model):
    """Why ControlNet `name` cannot steer base model `model`, judged from the configs on this disk (None when it fits
    or a config is not here: loading then says what is missing)."""
    net, unet = controlnet_config(name), unet_config(model)
    if net is None or unet is None:
        return None
    return fit_problem(net, unet)
