"""The control-map preview's thumbnails: each ControlNet's control map made small on the engine's device, then copied
to the host, so the engine thread copies a few kilobytes per map instead of a full-size picture.

torch is imported when the preview is first used, not with the live show (pixel shows and tests may never need it).
"""

PREVIEW_PIXELS = 160  # a thumbnail's longest side at most (smaller maps keep their size)


def thumbnail_size(height, width, longest=PREVIEW_PIXELS):
    """(height, width) of a picture's thumbnail: the aspect kept, the longer side at most `longest`, never enlarged."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def thumbnails(maps, longest=PREVIEW_PIXELS):
    """Host (h, w, 3) uint8 thumbnails of control maps ((1, 3, H, W) or (3, H, W) tensors in [0, 1], one channel
    is repeated as grey), scaled with antialiasing on their device so the copy to the host stays small."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for control_map in maps:
            image = control_map if control_map.dim() == 4 else control_map[None]
            image = image[:1].float()
            if image.shape[1] == 1:
                image = image.expand(-1, 3, -1, -1)
            size = thumbnail_size(*image.shape[-2:], longest)
            if size != tuple(image.shape[-2:]):
                image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
            pixels = (image[0, :3].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
            out.append(pixels.cpu().numpy())
    return tuple(out)
