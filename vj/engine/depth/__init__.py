"""Depth for pytti-style 3D animation: depth models (models.py) and the camera and 3D warp (camera.py)."""
