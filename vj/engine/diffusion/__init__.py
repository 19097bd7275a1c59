"""Stable Diffusion frames: model loading, the few-step sampler, prompt conditioning, token edits and guide images."""
