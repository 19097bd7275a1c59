"""Latent-blend transitions: the tree of txt2img trajectories between two scenes, its plan by quality, its cache."""
