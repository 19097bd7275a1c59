"""The scene DSL: pytti's `||`/`|`/`TEXT:WEIGHT:STOP` grammar parsed into typed objects."""

from vj.language.scenes.dsl import Mask, Prompt, Scene, SceneError, bracket_image_paths, parse_scenes, split_scenes

__all__ = ["Mask", "bracket_image_paths", "Prompt", "Scene", "SceneError", "parse_scenes", "split_scenes"]
