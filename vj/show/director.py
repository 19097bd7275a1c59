"""Turns time, inputs and the preset into the engine's per-frame requests (numbers only)."""

from dataclasses import replace

from vj.engine.diffusion.control_maps import ControlInput
from vj.engine.diffusion.frames import FrameRequest
from vj.engine.diffusion.net_fit import net_for_model
from vj.engine.depth.camera import Motion3D
from vj.engine.motion import Motion
from vj.config.loading import PresetError
from vj.config.schema import DEPTH_VARIABLES, MOTION_KEYS
from vj.engine.vocabulary import CONTROL_IMAGES
from vj.show.guidance_inputs import guidance_request, uses_guidance
from vj.language.scenes.edits import scene_prompts
from vj.show.timeline import Timeline
from vj.language.value_ranges import KEY_KINDS, ValueGuard
from vj.show.variables import FrameVariables
from vj.video.cuts import is_cut

JOIN = 0.2  # a latent blend that becomes ready mid-transition fades in over this share of the transition


def _faded(targets, k):
    """Guidance targets with their weights times k."""
    return tuple(replace(t, weight=t.weight * k) for t in targets)


class Director:
    """Evaluates the preset's expressions for each frame; shared by renders and the live show."""

    def __init__(self, preset, seed=None, transitions=None, notify=None, video=None, control_images=None):
        if video is None and preset.video_problem:  # Video Source without video_path, and no --video-in
            raise PresetError([preset.video_problem])
        if control_images is None and any(c.image not in CONTROL_IMAGES for c in preset.controlnets):
            raise ValueError("a preset with ControlNet image files needs the show's ControlImages")
        self.preset = preset
        self.video = video  # Video Source mode: a VideoSource (frame_for(t) -> VideoFrame | None), or None
        self.control_images = control_images  # the ControlNets' picture and video files (show.control_images)
        self.cut = False  # whether the last request's video frame started a new shot
        self._video_rgb = None  # the video frame the last request used
        self.hold = ValueGuard(notify)  # every value reaching a tensor, in its range; `notify`: the live HUD
        self.transitions = transitions  # latent-blend Transitions (transition_mode: latent_blend), or None
        self.blending = None  # the last scene change: 'latent blend', 'crossfade' (not ready) or None
        self._change = None  # ((from, to), mix) of the scene change playing
        self._joined = None  # the mix at which its latent blend joined (0: ready from its start)
        self._missed = False  # whether a frame of it had no latent blend ready
        self.seed = preset.seed if seed is None else seed
        self.variables = FrameVariables(preset.input_variables + preset.control_names)
        self.timeline = Timeline(preset.scene_durations(), preset.transition_time)
        self._motion = [(key, KEY_KINDS[key], getattr(preset, key)) for key in MOTION_KEYS]
        self._depth_terms = preset.animation_mode == "3D" and any(
            set(DEPTH_VARIABLES) & e.names
            for e in (preset.translate_x, preset.translate_y, preset.translate_z_3d, *preset.rotate_3d)
        )
        self._control_defaults = {c.name: float(c.default) for c in preset.controls}  # a render's controls
        self.guided = uses_guidance(preset)

    def _prompts(self, scene, env):
        # brace groups: their coefficients evaluated, as the canonical numeric text (vj/language/scenes/edits.py)
        return scene_prompts(self.preset.scenes[scene], env, self.hold)

    def request(self, frame, t, inputs, position=None):
        """The FrameRequest for frame number `frame` at show time `t` with input values `inputs`; the scene
        comes from `position` (a live show's ScenePosition) or, when None, from the render's timeline."""
        env = self.variables.frame(t, frame, {**self._control_defaults, **inputs})
        position = self.timeline.at(t) if position is None else position
        preset = self.preset
        guide, weight = self._guide(position)
        request = FrameRequest(
            index=frame,
            prompts=self._prompts(position.scene, env),
            strength=min(max(preset.strength(env), 0.01), 1.0),
            motion=self._motion_of(env),
            seed=self.seed,
            previous_prompts=None if position.previous is None else self._prompts(position.previous, env),
            mix=position.mix,
            init_weight=self.hold(
                KEY_KINDS["direct_init_weight"], "direct_init_weight", max(0.0, preset.direct_init_weight(env))
            ),
            guide=guide,
            guide_weight=weight,
            guidance=self._guidance(position, env) if self.guided else None,
            image_conditioning=tuple((str(i), max(0.0, g.strength(env))) for i, g in enumerate(preset.guide_images)),
        )
        request = request if self.video is None else self._with_video(request, t, env)
        return replace(request, controls=self._controls(t, env, request.video)) if preset.controlnets else request

    def _controls(self, t, env, video):
        """The ControlInputs of the frame at show time `t`: each net's scale, and its picture (`video`: the Video
        Source frame of the request; a file's picture or video frame at `t`; none for `previous`, the engine's own)."""
        p, hold = self.preset, self.hold
        return tuple(
            ControlInput(
                net_for_model(c.model, p.model),
                hold("control scale", f"controlnets[{i}].scale", c.scale(env)),
                video if c.image == "video" else None if c.image == "previous" else self.control_images.image(c, t),
                previous=c.image == "previous",
                preprocessor=c.preprocessor,
                options=c.options,
                start=c.start,
                end=c.end,
            )
            for i, c in enumerate(p.controlnets)
        )

    def _motion_of(self, env):
        """The frame's Motion (2D), or in 3D mode its Motion3D: numbers, or when the expressions use pytti's depth
        variables (r, R, mu) a function of them that the engine calls once it knows the frame's depth."""
        if self.preset.animation_mode != "3D":
            values = {key: self.hold(kind, key, expr(env)) for key, kind, expr in self._motion}
            # pytti's translate_y moves the picture up; Motion counts pixels down the screen
            return Motion(values["translate_x"], -values["translate_y"], *(values[k] for k in MOTION_KEYS[2:]))
        if not self._depth_terms:
            return self._motion_3d(env)
        return Motion3D(depth_terms=lambda r, big_r, mu: self._motion_3d({**env, "r": r, "R": big_r, "mu": mu}))

    def _motion_3d(self, env):
        p, hold = self.preset, self.hold
        return Motion3D(
            hold(KEY_KINDS["translate_x"], "translate_x", p.translate_x(env)),
            hold(KEY_KINDS["translate_y"], "translate_y", p.translate_y(env)),
            hold(KEY_KINDS["translate_z_3d"], "translate_z_3d", p.translate_z_3d(env)),
            tuple(hold("quaternion", "rotate_3d", q(env)) for q in p.rotate_3d),
        )

    def _with_video(self, request, t, env):
        """`request` with the video frame of time `t` (Video Source mode): all of it goes into the frame's input
        when reencode_each_frame is set or the frame starts a new shot (a cut, or the video's first frame), else
        video_weight of it; stabilization targets it. Before a live source's first frame: the request as it was."""
        found = self.video.frame_for(t)
        if found is None:
            self.cut = False
            return request
        previous, self._video_rgb = self._video_rgb, found.rgb
        self.cut = previous is None or (previous is not found.rgb and is_cut(previous, found.rgb))
        if self.preset.reencode_each_frame or self.cut:
            weight = 1.0
        else:
            weight = self.hold(KEY_KINDS["video_weight"], "video_weight", self.preset.video_weight(env))
        return replace(request, video=found.rgb, video_weight=weight, video_cut=self.cut, video_stabilization=True)

    def _guidance(self, position, env):
        """The CLIP guidance of the frame; during a scene change both scenes' prompts, weighted by the mix."""
        request = guidance_request(self.preset, position.scene, env, self.hold)
        if position.previous is None or position.mix >= 1.0:
            return request
        before = guidance_request(self.preset, position.previous, env, self.hold)
        return replace(
            request, targets=_faded(before.targets, 1.0 - position.mix) + _faded(request.targets, position.mix)
        )

    def _guide(self, position):
        """(the latent-blend tree's picture, its weight) while a scene change plays; (None, 0) otherwise. A tree
        that is not ready leaves the plain crossfade; one that becomes ready mid-way fades in over JOIN."""
        if position.previous is None or position.mix >= 1.0:
            self.blending = self._change = None
            return None, 0.0
        if self.transitions is None or self.preset.transition_mode != "latent_blend":
            self.blending = "crossfade"
            return None, 0.0
        pair = (position.previous, position.scene)
        if self._change is None or self._change[0] != pair or position.mix < self._change[1]:
            self._joined, self._missed = None, False  # a new scene change
        self._change = (pair, position.mix)
        found = self.transitions.guide(position.previous, position.scene, position.mix)
        if found is None:
            self.blending, self._missed = "crossfade (latent blend not ready)", True
            return None, 0.0
        if self._joined is None:
            self._joined = position.mix if self._missed else 0.0
        self.blending = "latent blend"
        image, weight = found
        if self._joined > 0:
            weight *= min(1.0, (position.mix - self._joined) / JOIN)
        return image, weight
