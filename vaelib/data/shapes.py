"""The `shapes` renderer: RGB images of simple shapes from known generative factors, vectorised."""

from __future__ import annotations

import math

import torch

from vaelib.config import BACKGROUNDS

SHAPE_NAMES = ("square", "circle", "triangle")
COLOUR_NAMES = ("red", "yellow", "green", "cyan", "blue", "magenta")
COLOURS = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]])  # RGB in [0, 1]
SCALES = torch.linspace(0.08, 0.18, 6)  # radius of the unit shape, as a fraction of the image side
REACH = 0.18 * math.sqrt(2)  # farthest pixel of the largest shape from its centre (a square's corner)
POSITIONS = torch.linspace(REACH + 0.02, 1 - REACH - 0.02, 8)  # centre x and y, fraction of the side
ROTATIONS = torch.arange(8) * (90.0 / 8)  # degrees, 0 .. 78.75
TRIANGLE_INRADIUS = 0.6  # equilateral triangle: inradius 0.6, circumradius 1.2 (unit-shape units)
FACTOR_NAMES = ("shape", "colour", "scale", "x", "y", "rotation")
FACTOR_SIZES = (3, 6, 6, 8, 8, 8)
WAVES = 3  # sinusoids per channel of a textured background
RAMP = (0.25, 0.75)  # a gradient background's two end colours are drawn per channel in this range


def render_shapes(factors: torch.Tensor, image_size: int = 32, background: str = "plain",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (N, 3, S, S) images of the shapes whose factor indices are the rows of `factors` (N, 6)."""
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors of shape {tuple(factors.shape)} are invalid: allowed (N, 6)")
    if background not in BACKGROUNDS:
        raise ValueError(f"background={background!r} is invalid: allowed {', '.join(BACKGROUNDS)}")
    n = factors.shape[0]
    waves = ramps = None
    if background == "textured":  # per image, channel, wave: x/y frequency (cycles per image) and phase
        freq = torch.rand((n, 3, WAVES, 2), generator=generator) * 5 - 2.5
        phase = torch.rand((n, 3, WAVES, 1), generator=generator) * 2 * math.pi
        waves = torch.cat([freq, phase], -1)  # (N, 3, WAVES, 3)
    elif background == "gradient":  # per image: two end colours (RGB) and the ramp's direction (radians)
        ends = RAMP[0] + (RAMP[1] - RAMP[0]) * torch.rand((n, 6), generator=generator)
        angle = torch.rand((n, 1), generator=generator) * 2 * math.pi
        ramps = torch.cat([ends, angle], 1)  # (N, 7): seven numbers, so a code of a few units can hold them
    out = []
    for i in range(0, n, 512):
        chunk = slice(i, i + 512)
        out.append(_render_chunk(factors[chunk], image_size, None if waves is None else waves[chunk],
                                 None if ramps is None else ramps[chunk]))
    return torch.cat(out) if out else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)


def _render_chunk(factors: torch.Tensor, size: int, waves: torch.Tensor | None,
                  ramps: torch.Tensor | None = None) -> torch.Tensor:
    shape, colour, scale, x, y, rot = factors.long().unbind(1)
    grid = (torch.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    dx = grid.view(1, 1, size) - POSITIONS[x].view(-1, 1, 1)  # (B, 1, S)
    dy = grid.view(1, size, 1) - POSITIONS[y].view(-1, 1, 1)  # (B, S, 1); y grows downwards
    theta = torch.deg2rad(ROTATIONS[rot]).view(-1, 1, 1)
    r = SCALES[scale].view(-1, 1, 1)
    u = (torch.cos(theta) * dx + torch.sin(theta) * dy) / r  # (B, S, S) unit-shape coordinates
    v = (-torch.sin(theta) * dx + torch.cos(theta) * dy) / r
    square = torch.maximum(u.abs(), v.abs()) <= 1
    circle = u**2 + v**2 <= 1
    triangle = torch.ones_like(square)
    for k in range(3):  # the three edges' outward normals point at -90, 30 and 150 degrees
        a = math.radians(-90 + 120 * k)
        triangle &= u * math.cos(a) + v * math.sin(a) <= TRIANGLE_INRADIUS
    sel = shape.view(-1, 1, 1)
    mask = torch.where(sel == 0, square, torch.where(sel == 1, circle, triangle)).unsqueeze(1)  # (B, 1, S, S)
    bg = (_texture(waves, grid) if waves is not None else _ramp(ramps, grid) if ramps is not None
          else torch.zeros((len(factors), 3, size, size)))
    img = torch.where(mask, COLOURS[colour].view(-1, 3, 1, 1), bg)
    return (img * 255).round_().to(torch.uint8)


def _texture(waves: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Mid-intensity coloured texture (B, 3, S, S) in [0.25, 0.75]: a mean of low-frequency sinusoids."""
    fx, fy, phase = (w.unsqueeze(-1) for w in waves.unbind(-1))  # each (B, 3, WAVES, 1)
    a = 2 * math.pi * fx * grid + phase  # (B, 3, WAVES, S) along x
    b = 2 * math.pi * fy * grid  # (B, 3, WAVES, S) along y
    # sum_k sin(a_k + b_k) = sum_k cos(b_k) sin(a_k) + sin(b_k) cos(a_k): one batched matmul per channel
    rows = torch.cat([torch.cos(b), torch.sin(b)], 2).transpose(2, 3)  # (B, 3, S, 2 WAVES)
    cols = torch.cat([torch.sin(a), torch.cos(a)], 2)  # (B, 3, 2 WAVES, S)
    return 0.5 + (0.25 / WAVES) * (rows @ cols)  # (B, 3, S, S) in [0.25, 0.75]


def _ramp(ramps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """A linear colour ramp (B, 3, S, S) along the direction `angle`: each pixel mixes the two colours by its
    position along that direction (the pure colours at the corners of a diagonal ramp), so the background is
    smooth and set by 7 numbers per image."""
    start, end, angle = ramps[:, 0:3], ramps[:, 3:6], ramps[:, 6]
    c = (grid - 0.5).view(1, 1, -1)  # pixel centres about the image centre
    along = torch.cos(angle).view(-1, 1, 1) * c + torch.sin(angle).view(-1, 1, 1) * c.transpose(1, 2)  # (B, S, S)
    t = (0.5 + along / math.sqrt(2)).unsqueeze(1)  # in [0, 1]: |along| <= sqrt(2) / 2, (B, 1, S, S)
    return start.view(-1, 3, 1, 1) + (end - start).view(-1, 3, 1, 1) * t
