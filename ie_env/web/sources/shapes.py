"""Drawing the generated site's shapes on a white canvas."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def draw_shape(
    shape: str, color: tuple[int, int, int], size: int, scale: float, dx: float, dy: float, angle: float
):
    """Draw one generated shape on a white RGB canvas."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cx, cy = size * (0.5 + dx), size * (0.5 + dy)
    r = size * scale / 2
    box = (cx - r, cy - r, cx + r, cy + r)
    theta = np.deg2rad(angle)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "ring":
        draw.ellipse(box, outline=color, width=max(2, size // 10))
    elif shape in ("square", "triangle", "star", "cross"):
        if shape == "square":
            radii, n = [r * 1.2] * 4, 4
        elif shape == "triangle":
            radii, n = [r * 1.1] * 3, 3
        elif shape == "star":
            radii, n = [r * 1.1, r * 0.45] * 5, 10
        else:
            t = 0.35
            pts = [
                (t, 1),
                (t, t),
                (1, t),
                (1, -t),
                (t, -t),
                (t, -1),
                (-t, -1),
                (-t, -t),
                (-1, -t),
                (-1, t),
                (-t, t),
                (-t, 1),
            ]
            poly = []
            for px, py in pts:
                x, y = px * r, py * r
                poly.append(
                    (cx + x * np.cos(theta) - y * np.sin(theta), cy + x * np.sin(theta) + y * np.cos(theta))
                )
            draw.polygon(poly, fill=color)
            return image
        poly = [
            (
                cx + radii[k] * np.cos(theta + 2 * np.pi * k / n),
                cy + radii[k] * np.sin(theta + 2 * np.pi * k / n),
            )
            for k in range(n)
        ]
        draw.polygon(poly, fill=color)
    elif shape == "stripes":
        step = max(4, size // 8)
        for k in range(-size, 2 * size, step * 2):
            draw.line([(k, 0), (k + size * np.cos(theta), size)], fill=color, width=step)
    elif shape == "dots":
        step = max(6, size // 5)
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                d = step * 0.3
                draw.ellipse((x - d, y - d, x + d, y + d), fill=color)
    else:
        raise ValueError(f"unknown generated shape {shape!r}")
    return image
