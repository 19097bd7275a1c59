"""Which frame engine a preset renders with, built the same way for `vj render`, `vj live` and `vj bench`.

`image_model: diffusion` is the diffusion FrameEngine (CLIP guided when the preset uses guidance);
`unlimited_palette` and `limited_palette` are pytti's pixel models in the PixelEngine, which needs no diffusion
weights at all. `--model tiny` also makes the perceptors tiny (random weights, built in-process).

`pixel_size` (pytti's key, default 1): the pixel models optimize a picture of the frame's size divided by
pixel_size and show it in pixel_size x pixel_size blocks (vj/engine/pixels/engine.py). Diffusion has no pixels of
its own to enlarge, so there it is a wrapper around the engine (`BlockyEngine`): the diffusion engine renders at
the frame's size divided by pixel_size (rounded to a multiple of 8, at least 64 and at most the frame's size) and
each frame is scaled up by nearest neighbour to the preset's size. pixel_size 1 makes no wrapper.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from vj.show.guidance_inputs import cutout_settings, load_assets, perceptor_names, read_picture
from vj.config.loading import PresetError
from vj.video.frames import nearest


@dataclass
class EngineFactory:
    """Makes the preset's engine for given EngineSettings (a live show makes a new one after a size change)."""

    preset: object
    components: object  # diffusion Components, or None for pixel models
    objective: object  # vj.engine.guidance.objective.Objective, or None without guidance
    init: object  # the init image (uint8 HxWx3) at the preset's size, or None
    device: torch.device
    target_palette: object = None  # limited_palette: the picture whose colours seed the palette (uint8), or None
    guides: dict = dataclasses.field(default_factory=dict)  # guide image number (text) -> GuideEmbedding
    pictures: dict = dataclasses.field(default_factory=dict)  # (path, mtime, size) -> guide image embedding
    depth: object = None  # the depth model (vj.engine.depth.models.DepthModel) of 3D, depth stabilization and the
    # ControlNets' depth preprocessor, or None
    controlnets: dict = dataclasses.field(default_factory=dict)  # loaded name -> ControlNetModel

    def use_preset(self, preset, engine):
        """A changed preset (hot reload, typed prompt): new pictures, masks, cutouts and perceptors for `engine`
        (the running one) and the engines made from now on, and pixel models' optimizer keys. Returns warnings
        for what cannot change without a restart or failed; the show then keeps what it had."""
        from vj.engine.errors import EngineError

        warnings = []
        if preset.image_model != self.preset.image_model:
            warnings.append(
                f"image_model {preset.image_model}: takes effect at restart (the show keeps {self.preset.image_model})"
            )
        if self.components is not None:
            try:
                self.guides = self.embed_guides(preset)
            except (EngineError, PresetError) as exc:
                self.guides = {}  # the Director names the new preset's guides: none of the old ones may stand in
                warnings.append(f"guide images off: {str(exc).splitlines()[0]}")
            engine.guide_images = self.guides
        names = perceptor_names(preset)
        try:
            if names:
                from vj.engine.guidance.objective import Objective

                same = self.objective is not None and perceptor_names(self.preset) == names
                perceptors = self.objective.perceptors if same else load_perceptors(names, preset.model, self.device)
                self.objective = Objective(
                    perceptors, load_assets(preset, self.init), cutout_settings(preset), self.depth_loss()
                )
            elif self.components is not None:
                self.objective = None
            else:
                warnings.append("a pixel model needs a perceptor: keeping the ones it has")
        except (EngineError, PresetError) as exc:
            return warnings + [f"guidance not changed: {str(exc).splitlines()[0]}"]
        missing = sorted(set(controlnet_names(preset)) - set(self.controlnets))
        if missing:
            warnings.append(f"ControlNet {', '.join(missing)}: takes effect at restart (its weights load then)")
        if self.depth is None and needs_depth(preset):
            warnings.append(
                "3D, depth stabilization and the depth preprocessor need the depth model: they take effect at restart"
            )
        elif self.depth is not None and depth_model_name(preset) != depth_model_name(self.preset):
            warnings.append(f"depth_model {preset.depth_model}: takes effect at restart")
        elif self.depth is not None:
            self.depth.input_size = preset.depth_input_size
        kept = {"image_model": self.preset.image_model}
        if self.components is not None and preset.pixel_size != self.preset.pixel_size:
            warnings.append(f"pixel_size {preset.pixel_size}: takes effect at restart")
        kept["pixel_size"] = self.preset.pixel_size
        self.preset = dataclasses.replace(preset, **kept)
        engine.objective = self.objective
        self._use_warp(engine)
        if self.components is None:
            warnings += _use_pixel_settings(engine, pixel_settings(preset, engine.settings))
        return warnings

    def __call__(self, settings):
        engine = self._use_warp(self._engine(settings))
        if self.components is not None:
            engine.controlnets = self.controlnets
            engine.depth = self.depth_loss()
        return engine

    def depth_loss(self):
        """The depth model's metres (the objective's depth stabilization, the depth preprocessor), or None."""
        return None if self.depth is None else self.depth.metres

    def _use_warp(self, engine):
        """`engine` moving its frames in 3D by the depth model in 3D mode (its 2D warp otherwise)."""
        from vj.engine.depth.camera import Camera, DepthWarp
        from vj.engine.motion import warp

        p = self.preset
        if self.depth is None or p.animation_mode != "3D":
            engine.warp = warp
            return engine
        camera = Camera(p.field_of_view, p.near_plane, p.far_plane, p.lock_camera, p.height)
        metres = self.depth.metres
        signed = self.components is not None  # the diffusion engine holds its frames in [-1, 1]
        engine.warp = DepthWarp((lambda image: metres(image / 2 + 0.5)) if signed else metres, camera)
        return engine

    def _engine(self, settings):
        init = self.init if self.init is None or self.init.shape[:2] == (settings.height, settings.width) else None
        if self.components is None:
            from vj.engine.pixels.engine import PixelEngine

            return PixelEngine(
                pixel_settings(self.preset, settings), self.objective, init, self.device, self.target_palette
            )
        from vj.engine.diffusion.frames import FrameEngine

        size = self.preset.pixel_size
        if size == 1:
            return FrameEngine(self.components, settings, init, objective=self.objective, guide_images=self.guides)
        small = render_settings(settings, size)
        inner = FrameEngine(
            self.components,
            small,
            resized(init, small.width, small.height),
            objective=self.objective,
            guide_images=self.guides,
        )
        return BlockyEngine(inner, settings)

    def embed_guides(self, preset):
        """The preset's guide images embedded by the CLIP image tower paired with the model's text encoder. The
        tower is loaded only for pictures not embedded before, and let go afterwards (it is only needed here)."""
        from vj.engine.diffusion.frames import GuideEmbedding

        pair, guides = None, {}
        for i, g in enumerate(preset.guide_images):
            stat = g.image.stat()
            key = (str(g.image), stat.st_mtime_ns, stat.st_size)
            if key not in self.pictures:
                pair = pair or pair_perceptor(self.components, preset.model, self.device)
                self.pictures[key] = pair.encode_picture_tokens(read_picture(g.image))
            guides[str(i)] = GuideEmbedding(self.pictures[key], g.method, guide_options(g), g.concept)
        return guides


def render_settings(settings, size):
    """The diffusion engine's settings for pixel_size `size`: the frame's size divided by it, rounded to a multiple
    of 8 (the VAE's), at least 64 and at most the frame's size."""

    def side(n):
        return min(n, max(64, 8 * round(n / size / 8)))

    return dataclasses.replace(settings, width=side(settings.width), height=side(settings.height))


def resized(image, width, height):
    """A uint8 HxWx3 picture at width x height (Lanczos), or None."""
    if image is None or image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


class BlockyEngine:
    """A diffusion engine rendering a smaller picture, each frame scaled up by nearest neighbour to `settings`'
    size (pytti's pixel_size for diffusion). Motion stays in frame pixels: translate and zoom are scaled to the
    small picture. Everything else (objective, guide_images, the timer, ...) is the inner engine's."""

    _OWN = ("inner", "settings")

    def __init__(self, inner, settings):
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "settings", settings)  # the frame's size; inner.settings has the rendered size

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def _request(self, request):
        from vj.engine.motion import Motion

        m, small, s = request.motion, self.inner.settings, self.settings
        if not isinstance(m, Motion) or m.is_identity:  # a 3D motion's units are the frame's at any size
            return request
        fx, fy = small.width / s.width, small.height / s.height
        motion = Motion(m.translate_x * fx, m.translate_y * fy, m.rotate, m.zoom_x * fx, m.zoom_y * fy)
        return dataclasses.replace(request, motion=motion)

    def render(self, request):
        return nearest(self.inner.render(self._request(request)), self.settings.width, self.settings.height)

    def reset(self):
        self.inner.reset()


RESTART_PIXEL_KEYS = (
    "model",
    "pixel_size",
    "palette_size",
    "palettes",
    "gamma",
    "hdr_weight",
    "palette_normalization_weight",
    "random_initial_palette",
    "lock_palette",
    "seed",
)


def _use_pixel_settings(engine, settings):
    """A running PixelEngine takes new optimizer keys at once; keys of its image model wait for a restart."""
    waiting = [k for k in RESTART_PIXEL_KEYS if getattr(settings, k) != getattr(engine.settings, k)]
    engine.settings = dataclasses.replace(settings, **{k: getattr(engine.settings, k) for k in waiting})
    return [f"{', '.join(waiting)}: take effect at restart"] if waiting else []


def pixel_settings(preset, settings):
    """The PixelEngine's settings: the frame's size and motion options from `settings`, the model's from the
    preset's `pixels` area (but its palette picture, which build_engines reads)."""
    from vj.engine.pixels.engine import PixelSettings

    pixels = preset.area("pixels")
    del pixels["target_palette"]
    return PixelSettings(
        **pixels,
        model=preset.image_model,
        seed=preset.seed,
        width=settings.width,
        height=settings.height,
        infill_mode=settings.infill_mode,
        sampling_mode=settings.sampling_mode,
    )


def load_perceptors(names, model, device, dtype=torch.float32):
    """The perceptors by open_clip `NAME/TAG`: with model `tiny` one tiny random perceptor stands for them all;
    with `arch:...` models each has its real architecture with random weights (benchmarks)."""
    from vj.engine.guidance import perceptors

    if model == "tiny":
        return [perceptors.tiny_perceptor(device, dtype)]
    pairs = list(dict.fromkeys(perceptors.parse_perceptor(name) for name in names))  # ViTB32 = ViT-B-32/openai
    if model.startswith("arch:"):
        return [perceptors.random_perceptor(name, device, dtype) for name, _ in pairs]
    return [perceptors.load_perceptor(name, tag, device, dtype) for name, tag in pairs]


def engine_settings(preset):
    """The engine's settings from a preset (renders and live shows alike)."""
    from vj.engine.diffusion.frames import EngineSettings

    return EngineSettings(
        width=preset.width,
        height=preset.height,
        steps=preset.steps,
        fixed_noise=preset.fixed_noise,
        infill_mode=preset.infill_mode,
        sampling_mode=preset.sampling_mode,
        # latent_blend plays its tree over the slerp crossfade of the conditionings
        transition_mode=("slerp" if preset.transition_mode == "latent_blend" else preset.transition_mode),
    )


def build_engines(preset, device="auto", dtype="auto", compile=False, init=None, guidance=True):
    """An EngineFactory for the preset: diffusion components (unless a pixel model), and with `guidance` its
    perceptors, assets, guide images and palette picture."""
    from vj.engine.devices import pick_device
    from vj.engine.diffusion.models import compile_components, load_components

    components = None
    if preset.image_model == "diffusion":
        components = load_components(preset.model, preset.vae, device, dtype)
        if compile:
            compile_components(components)
        device = components.device
    else:
        device = pick_device(device)
    depth = None
    if needs_depth(preset):
        from vj.engine.depth.models import load_depth_model

        dtype = components.dtype if components else torch.float32
        depth = load_depth_model(depth_model_name(preset), device, dtype, preset.depth_input_size)
    objective = None
    names = perceptor_names(preset) if guidance else ()
    if names:
        from vj.engine.guidance.objective import Objective

        perceptors = load_perceptors(names, preset.model, device)
        objective = Objective(
            perceptors, load_assets(preset, init), cutout_settings(preset), None if depth is None else depth.metres
        )
    palette = read_picture(preset.target_palette) if guidance and preset.target_palette else None
    nets = load_controlnets(preset, components) if guidance else {}  # prerender and morph: the scenes alone
    factory = EngineFactory(preset, components, objective, init, device, palette, depth=depth, controlnets=nets)
    if guidance and components is not None:
        factory.guides = factory.embed_guides(preset)
    return factory


def needs_depth(preset):
    """Whether the preset uses the depth model: 3D mode, a depth stabilization weight, or a depth preprocessor."""
    weight = preset.depth_stabilization_weight
    return (
        preset.animation_mode == "3D"
        or not (weight.is_constant and weight(None) == 0)
        or any(c.preprocessor == "depth" for c in preset.controlnets)
    )


def controlnet_names(preset):
    """The ControlNets the preset's show loads, by name (with the tiny and arch: models, their random nets)."""
    from vj.engine.diffusion.net_fit import net_for_model

    return list(dict.fromkeys(net_for_model(c.model, preset.model) for c in preset.controlnets))


def load_controlnets(preset, components):
    """{name: ControlNetModel} of the preset's nets on the components' device and dtype; ModelError (one line naming
    the net) for one that is missing or does not fit the model's UNet."""
    from vj.engine.diffusion.controlnet import check_fits, load_controlnet
    from vj.engine.errors import ModelError

    nets = {}
    for i, name in enumerate(controlnet_names(preset) if components is not None else ()):
        net = nets[name] = load_controlnet(name, components.device, components.dtype, seed=i)
        problem = check_fits(net, components.unet)
        if problem:
            raise ModelError(f"ControlNet '{name}' for model {preset.model}: {problem}")
    return nets


def depth_model_name(preset):
    """The depth model: tiny with the tiny model, the real architecture with random weights with `arch:` models
    (as the perceptors), else the preset's `depth_model`."""
    if preset.model == "tiny":
        return "tiny"
    return "arch:depth-anything-small" if preset.model.startswith("arch:") else preset.depth_model


# The CLIP image towers whose embeddings are as wide as, and trained with, a text encoder's token states: SD 2.x and
# SD-Turbo use OpenCLIP ViT-H/14's text tower (1024 wide), SD 1.x OpenAI's ViT-L/14 (768 wide).
PAIRED_TOWERS = {1024: "ViT-H-14/laion2b_s32b_b79k", 768: "ViT-L-14/openai"}


def guide_options(guide):
    """The (name, value) options of a guide image's methods that its preset item holds, and the BOS cap (the
    concept's conditioning is the engine's to add)."""
    from vj.engine.diffusion.image_conditioning import OPTIONS

    names = dict.fromkeys(n for m in guide.method for n in sum(OPTIONS[m], ()) if n != "concept_conditioning")
    return tuple((name, getattr(guide, name)) for name in [*names, "bos_cap"])


def pair_perceptor(components, model, device):
    """The CLIP image tower paired with the model's text encoder (a tiny one of the same width for `tiny`)."""
    from vj.engine.guidance import perceptors
    from vj.engine.errors import EngineError

    width = components.text_encoder.config.hidden_size
    if model == "tiny":
        return perceptors.tiny_perceptor(device, embed_dim=width)
    name = PAIRED_TOWERS.get(width)
    if name is None:
        raise EngineError(
            f"guide_images: no CLIP image tower is known for the text encoder of '{model}' "
            f"({width} wide); they work with SD 1.x, SD 2.x and SD-Turbo models"
        )
    name, tag = perceptors.parse_perceptor(name)
    if model.startswith("arch:"):
        return perceptors.random_perceptor(name, device)
    return perceptors.load_perceptor(name, tag, device)
