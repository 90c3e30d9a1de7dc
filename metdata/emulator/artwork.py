"""Draw the deterministic synthetic pictures that the offline Met Collection API emulator serves.

One job: turn ``(style, seed, width, height)`` into a BGR ``uint8`` image that looks, at a glance
and to a small CNN, like a photograph of a Met object of that kind. Paintings for the four target
cultures (india, america, china, japan) carry the visual cues a person uses on the real
collection; china and japan deliberately share one renderer and differ only statistically.

Every picture is drawn on a small internal canvas whose longest side is fixed, then resampled to
the requested size, so the same object looks alike at every size and rendering stays cheap.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import cv2
import numpy as np

Colour = tuple[float, float, float]
_T = TypeVar("_T")

# Fixed internal resolution: every size of one object is a resampling of the same drawing.
_CANVAS_SIDE = 320
_MIN_SIDE = 8
_AA = cv2.LINE_AA

# --------------------------------------------------------------------------------------------
# Small drawing helpers (relative coordinates in, pixels out)
# --------------------------------------------------------------------------------------------


def _pt(img: np.ndarray, x: float, y: float) -> tuple[int, int]:
    """Convert a relative (x, y) in [0, 1] to a pixel coordinate on ``img``."""
    h, w = img.shape[:2]
    return round(x * w), round(y * h)


def _px(img: np.ndarray, frac: float, minimum: int = 1) -> int:
    """Convert a fraction of the canvas's shorter side to a pixel length."""
    return max(minimum, round(frac * min(img.shape[:2])))


def _poly(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Convert an (N, 2) array of relative coordinates to an int32 pixel polygon."""
    h, w = img.shape[:2]
    return np.round(np.asarray(xy, np.float64) * (w, h)).astype(np.int32)


def _pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    """Return one element of ``options`` chosen uniformly."""
    return options[int(rng.integers(len(options)))]


def _choose(rng: np.random.Generator, weighted: Sequence[tuple[str, float]]) -> str:
    """Return one name from ``(name, weight)`` pairs, with probability proportional to weight."""
    weights = np.array([w for _, w in weighted], np.float64)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))][0]


def _jitter(rng: np.random.Generator, colour: Sequence[float], spread: float) -> Colour:
    """Return ``colour`` shifted in brightness by ~``spread`` and in hue by a third of that.

    Mostly-luminance jitter keeps muted colours (silk, stone, mounts) from drifting into
    implausible tints, which independent per-channel noise does.
    """
    shift = rng.normal(0.0, spread) + rng.normal(0.0, spread / 3, 3)
    c = np.clip(np.asarray(colour, np.float64) + shift, 0, 255)
    return float(c[0]), float(c[1]), float(c[2])


def _scale(colour: Sequence[float], factor: float) -> Colour:
    """Return ``colour`` multiplied by ``factor`` and clipped to the byte range."""
    c = np.clip(np.asarray(colour, np.float64) * factor, 0, 255)
    return float(c[0]), float(c[1]), float(c[2])


def _hsv(hue: float, sat: float, val: float) -> Colour:
    """Return the BGR colour of OpenCV hue (0-180), saturation and value (both 0-1)."""
    pix = np.array([[[hue % 180, np.clip(sat, 0, 1) * 255, np.clip(val, 0, 1) * 255]]], np.uint8)
    b, g, r = cv2.cvtColor(pix, cv2.COLOR_HSV2BGR)[0, 0]
    return float(b), float(g), float(r)


def _neutral(rng: np.random.Generator, level: float, spread: float, cast: float) -> Colour:
    """Return a grey near ``level`` with a slight colour ``cast``: paper, stone, backdrops."""
    grey = level + rng.normal(0.0, spread)
    c = np.clip(grey + rng.normal(0.0, cast, 3), 0, 255)
    return float(c[0]), float(c[1]), float(c[2])


def _disc(
    img: np.ndarray,
    centre: tuple[int, int],
    axes: tuple[int, int],
    colour: Colour | float,
    angle: float = 0.0,
    arc: tuple[float, float] = (0, 360),
) -> None:
    """Fill an anti-aliased ellipse, or a sector of one, given in pixels."""
    cv2.ellipse(img, centre, axes, angle, arc[0], arc[1], colour, -1, _AA)


def _dot(img: np.ndarray, centre: tuple[int, int], radius: int, colour: Colour | float) -> None:
    """Fill an anti-aliased circle given in pixels."""
    cv2.circle(img, centre, radius, colour, -1, _AA)


def _gradient(img: np.ndarray, top: Colour, bottom: Colour, y0: float = 0.0, y1: float = 1.0):
    """Fill the rows between relative heights ``y0`` and ``y1`` with a vertical gradient."""
    h = img.shape[0]
    a = int(y0 * h)
    b = max(a + 1, min(h, round(y1 * h)))
    t = np.linspace(0.0, 1.0, b - a, dtype=np.float32)[:, None, None]
    img[a:b] = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t


def _blend(img: np.ndarray, alpha: np.ndarray, colour: Colour) -> None:
    """Composite ``colour`` over ``img`` in place with per-pixel opacity ``alpha`` in [0, 1]."""
    a = np.ascontiguousarray(alpha, np.float32)
    top = np.empty_like(img)
    top[:] = np.round(colour)
    img[:] = cv2.blendLinear(top, img, a, 1 - a)


def _shade(img: np.ndarray, factor: np.ndarray) -> None:
    """Multiply ``img`` in place by a per-pixel (H, W) or per-channel brightness ``factor``."""
    f = factor[..., None] if factor.ndim == 2 else factor
    img[:] = np.clip(img * f, 0, 255)


def _radial(img: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Return an (H, W) float32 map falling from 1 at (cx, cy) to 0 at ``radius`` (relative)."""
    h, w = img.shape[:2]
    ys = (np.arange(h, dtype=np.float32)[:, None] / h - cy) * (h / max(h, w))
    xs = (np.arange(w, dtype=np.float32)[None, :] / w - cx) * (w / max(h, w))
    return np.clip(1 - np.sqrt(xs * xs + ys * ys) / radius, 0, 1)


def _vignette(img: np.ndarray, strength: float) -> np.ndarray:
    """Return a brightness map darkening the corners, as lens falloff does in photography."""
    return 1 - strength + strength * np.sqrt(_radial(img, 0.5, 0.5, 0.85))


def _stains(img: np.ndarray, grain: np.random.Generator, strength: float, cells: int) -> np.ndarray:
    """Return a smooth random brightness map, like stains, ageing or uneven lighting."""
    h, w = img.shape[:2]
    k = cells / max(h, w)
    low = grain.standard_normal((max(2, round(h * k)), max(2, round(w * k))), dtype=np.float32)
    smooth = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    return 1 + strength * np.clip(smooth, -2.5, 2.5)


def _weave(img: np.ndarray, strength: float) -> np.ndarray:
    """Return a fine crossing-thread brightness map, the look of primed canvas or woven silk."""
    h, w = img.shape[:2]
    threads_y = np.sin(np.arange(h, dtype=np.float32) * 2.1)[:, None]
    threads_x = np.sin(np.arange(w, dtype=np.float32) * 2.1)[None, :]
    return 1 + strength * threads_y * threads_x


def _finish(
    img: np.ndarray,
    grain: np.random.Generator,
    noise: float,
    brightness: Sequence[np.ndarray] = (),
    tint: Sequence[float] = (1.0, 1.0, 1.0),
) -> None:
    """Apply the photographic surface in one pass: brightness maps, a colour cast and grain.

    Fusing these keeps every style to a single full-canvas float pass, which is most of the
    rendering budget.
    """
    h, w = img.shape[:2]
    factor = grain.standard_normal((h, w), dtype=np.float32) * (noise / 128)
    factor += 1
    for extra in brightness:
        factor *= extra
    out = img * (factor[..., None] * np.asarray(tint, np.float32))
    img[:] = np.clip(out, 0, 255)


def _soften(img: np.ndarray, sigma_frac: float) -> None:
    """Blur ``img`` in place by a sigma given as a fraction of the shorter side."""
    sigma = sigma_frac * min(img.shape[:2])
    if sigma >= 0.3:
        img[:] = cv2.GaussianBlur(img, (0, 0), sigma)


# --------------------------------------------------------------------------------------------
# Shared figures and objects
# --------------------------------------------------------------------------------------------


def _blob_mask(img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, size: float):
    """Return a uint8 mask of a smooth random closed silhouette of relative radius ``size``."""
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.6, 1.5)
    h, w = img.shape[:2]
    side = min(h, w)
    xs = cx * w + np.cos(theta) * r * size * side * aspect
    ys = cy * h + np.sin(theta) * r * size * side / aspect
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(np.stack([xs, ys], 1)).astype(np.int32)], 255, _AA)
    return mask


def _vessel_profile(rng: np.random.Generator) -> np.ndarray:
    """Return 48 relative half-widths of a random vase outline from lip (0) to foot (1)."""
    lip = rng.uniform(0.12, 0.35)
    neck = rng.uniform(0.06, lip)
    t_shoulder, t_belly = rng.uniform(0.15, 0.35), rng.uniform(0.45, 0.7)
    shoulder, belly = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5)
    foot = rng.uniform(0.12, 0.3)
    t = np.linspace(0, 1, 48)
    r = np.interp(t, [0, 0.08, t_shoulder, t_belly, 0.94, 1.0], [lip, neck, shoulder, belly, foot, foot])
    return np.convolve(np.pad(r, 2, mode="edge"), np.ones(5) / 5, mode="valid")


def _vessel(img: np.ndarray, rng: np.random.Generator, top: float, bottom: float):
    """Return (mask, u) for a vessel: its uint8 mask and each pixel's -1..1 position across it.

    ``u`` is what cylindrical shading needs: the horizontal coordinate normalised by the
    vessel's half-width on that row.
    """
    h, w = img.shape[:2]
    profile = _vessel_profile(rng)
    cx = rng.uniform(0.44, 0.56) * w
    height = (bottom - top) * h
    half = profile * height * rng.uniform(0.55, 0.9)
    ys = top * h + np.linspace(0, height, len(profile))
    outline = np.concatenate([np.stack([cx - half, ys], 1), np.stack([cx + half, ys], 1)[::-1]])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255, _AA)
    row_half = np.interp(np.arange(h), ys, half, left=1.0, right=1.0)
    u = (np.arange(w, dtype=np.float32)[None, :] - cx) / np.maximum(row_half, 1.0)[:, None]
    return mask, np.clip(u, -1, 1).astype(np.float32)


def _lit_surface(u: np.ndarray, base: Colour, light: float, gloss: float) -> np.ndarray:
    """Return an (H, W, 3) float image of a cylinder lit from ``light`` (-1..1) with a gloss."""
    lambert = np.sqrt(np.clip(1 - u * u, 0, 1)) * (0.8 + 0.2 * light * u)
    spec = gloss * np.exp(-(((u - light * 0.45) / 0.09) ** 2))
    shade = (0.3 + 0.75 * lambert)[..., None]
    return np.asarray(base, np.float32) * shade + 255 * spec[..., None]


def _paste(img: np.ndarray, mask: np.ndarray, layer: np.ndarray) -> None:
    """Composite ``layer`` over ``img`` in place where the uint8 ``mask`` is set."""
    a = mask.astype(np.float32) * (1 / 255)
    # convertScaleAbs saturates to uint8 in C; layers are non-negative so abs() changes nothing.
    img[:] = cv2.blendLinear(cv2.convertScaleAbs(layer), img, a, 1 - a)


def _drop_shadow(img: np.ndarray, rng: np.random.Generator, cx: float, y: float, rx: float):
    """Darken an ellipse under an object so it sits on a surface rather than floating."""
    h, w = img.shape[:2]
    shadow = np.zeros((h, w), np.float32)
    axes = (max(1, round(rx * w)), max(1, round(rx * w * 0.15)))
    _disc(shadow, _pt(img, cx, y), axes, 1.0)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(0.5, rx * w * 0.15))
    _shade(img, 1 - rng.uniform(0.25, 0.5) * shadow)


def _studio_background(img: np.ndarray, rng: np.random.Generator) -> Colour:
    """Paint a seamless-paper studio backdrop and return its middle colour."""
    base = _neutral(rng, _pick(rng, (232.0, 200.0, 130.0, 40.0)), 8, 2.5)
    _gradient(img, _scale(base, rng.uniform(0.85, 1.0)), _scale(base, rng.uniform(1.0, 1.12)))
    _shade(img, _vignette(img, rng.uniform(0.05, 0.25)))
    return base


def _portrait(
    img: np.ndarray,
    rng: np.random.Generator,
    backgrounds: Sequence[Colour],
    clothes: Sequence[Colour],
) -> None:
    """Draw a bust portrait: plain background, dark shoulders, a lit face oval and hair."""
    bg = _jitter(rng, _pick(rng, backgrounds), 10)
    _gradient(img, _scale(bg, rng.uniform(0.6, 1.0)), _scale(bg, rng.uniform(0.5, 0.9)))
    cx, cy = rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.42)
    glow = _radial(img, cx, cy, rng.uniform(0.4, 0.8))
    _shade(img, 1 + rng.uniform(0.1, 0.5) * glow)
    h, w = img.shape[:2]
    side = min(h, w)
    body = _jitter(rng, _pick(rng, clothes), 8)
    shoulder_w = rng.uniform(0.3, 0.45) * side
    _disc(
        img,
        _pt(img, cx + rng.normal(0, 0.03), 1.02),
        (round(shoulder_w), round(0.5 * h - cy * h * 0.2)),
        body,
        arc=(180, 360),
    )
    face_w, face_h = rng.uniform(0.09, 0.13) * side, rng.uniform(0.13, 0.17) * side
    if rng.random() < 0.5:
        collar = _jitter(rng, (215, 225, 230), 12)
        neck_y = cy * h + face_h * 1.1
        tri = np.array(
            [
                [cx * w - face_w, neck_y],
                [cx * w + face_w, neck_y],
                [cx * w, neck_y + face_h * rng.uniform(0.8, 1.6)],
            ]
        )
        cv2.fillPoly(img, [np.round(tri).astype(np.int32)], collar, _AA)
    skin = _jitter(rng, (125, 160, 205), 14)
    cv2.rectangle(
        img,
        (round(cx * w - face_w * 0.4), round(cy * h)),
        (round(cx * w + face_w * 0.4), round(cy * h + face_h * 1.3)),
        _scale(skin, 0.8),
        -1,
    )
    hair = _jitter(rng, _pick(rng, ((25, 30, 40), (40, 60, 90), (200, 200, 205), (30, 45, 70))), 8)
    _disc(
        img,
        (round(cx * w), round(cy * h - face_h * 0.15)),
        (round(face_w * 1.15), round(face_h * 1.05)),
        hair,
    )
    centre, axes, tilt = (
        (round(cx * w), round(cy * h + face_h * 0.1)),
        (round(face_w), round(face_h)),
        rng.normal(0, 5),
    )
    _disc(img, centre, axes, skin, angle=tilt)
    _face_shadow(img, rng, centre, axes, tilt, skin)
    eye_y = round(cy * h)
    for dx in (-0.4, 0.4):
        _dot(img, (round(cx * w + dx * face_w), eye_y), _px(img, 0.008), _scale(skin, 0.45))


def _face_shadow(
    img: np.ndarray,
    rng: np.random.Generator,
    centre: tuple[int, int],
    axes: tuple[int, int],
    tilt: float,
    skin: Colour,
) -> None:
    """Model the face with a soft shadow on the side away from the light."""
    h, w = img.shape[:2]
    face = np.zeros((h, w), np.float32)
    _disc(face, centre, axes, 1.0, angle=tilt)
    dark = np.zeros_like(face)
    offset = round(rng.choice((-1, 1)) * axes[0] * rng.uniform(0.6, 1.0))
    _disc(dark, (centre[0] + offset, centre[1]), axes, 1.0, angle=tilt)
    dark = cv2.GaussianBlur(dark, (0, 0), max(0.5, axes[0] * 0.4))
    _blend(img, dark * face * rng.uniform(0.3, 0.6), _scale(skin, 0.45))


def _hills(img: np.ndarray, rng: np.random.Generator, horizon: float, colours: Sequence[Colour]):
    """Draw overlapping hill ridges below ``horizon``, far ones first and paler."""
    xs = np.linspace(0, 1, 24)
    n = len(colours)
    for i, colour in enumerate(colours):
        base = horizon + (i / n) * (1 - horizon) * 0.6
        amp = rng.uniform(0.03, 0.12)
        ridge = base - amp * np.abs(np.sin(xs * rng.uniform(2, 6) + rng.uniform(0, 6)))
        ridge = ridge + rng.normal(0, 0.008, len(xs))
        pts = np.concatenate([np.stack([xs, ridge], 1), [[1, 1.01], [0, 1.01]]])
        cv2.fillPoly(img, [_poly(img, pts)], _jitter(rng, colour, 8), _AA)


def _tree(img: np.ndarray, rng: np.random.Generator, x: float, y: float, size: float, leaf: Colour):
    """Draw a tree as a trunk under a cluster of overlapping foliage discs."""
    trunk = _jitter(rng, (30, 45, 60), 8)
    top = y - size
    cv2.line(
        img,
        _pt(img, x, y),
        _pt(img, x + rng.normal(0, 0.01), top + size * 0.3),
        trunk,
        _px(img, size * 0.08),
        _AA,
    )
    for _ in range(int(rng.integers(4, 9))):
        dx, dy = rng.normal(0, size * 0.25), rng.uniform(-size * 0.1, size * 0.45)
        _dot(
            img,
            _pt(img, x + dx * 0.8, top + dy),
            _px(img, size * rng.uniform(0.15, 0.3)),
            _jitter(rng, leaf, 10),
        )


# --------------------------------------------------------------------------------------------
# india: saturated flat miniature with a painted border
# --------------------------------------------------------------------------------------------

_INDIA_GROUNDS: tuple[Colour, ...] = (
    (35, 45, 200),
    (30, 120, 235),
    (50, 150, 60),
    (40, 180, 220),
    (130, 60, 25),
    (60, 170, 130),
)
_INDIA_ACCENTS: tuple[Colour, ...] = (
    (30, 30, 210),
    (20, 140, 240),
    (40, 160, 40),
    (50, 200, 235),
    (230, 230, 240),
    (150, 80, 200),
    (160, 90, 30),
)
_INDIA_BORDERS: tuple[Colour, ...] = (
    (30, 30, 190),
    (120, 50, 20),
    (150, 120, 220),
    (120, 190, 215),
    (20, 20, 25),
    (40, 110, 40),
)
_GOLD: Colour = (60, 170, 215)


def _india_architecture(img: np.ndarray, rng: np.random.Generator, floor: float) -> None:
    """Draw a flat pavilion: wall, dark arched openings and an onion dome with a finial."""
    x0 = rng.uniform(0.05, 0.5)
    bw, bh = rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.45)
    wall = _jitter(rng, _pick(rng, ((225, 230, 240), (70, 90, 190), (190, 210, 235))), 10)
    top = floor - bh
    cv2.rectangle(img, _pt(img, x0, top), _pt(img, x0 + bw, floor), wall, -1)
    opening = _jitter(rng, _pick(rng, ((40, 30, 30), (120, 60, 30), (40, 60, 140))), 10)
    n = int(rng.integers(1, 4))
    for i in range(n):
        ax = x0 + bw * (i + 0.5) / n
        aw = bw / n * 0.28
        cv2.rectangle(img, _pt(img, ax - aw, top + bh * 0.35), _pt(img, ax + aw, floor), opening, -1)
        h, w = img.shape[:2]
        _disc(
            img,
            _pt(img, ax, top + bh * 0.35),
            (round(aw * w), round(aw * w * 0.9)),
            opening,
            arc=(180, 360),
        )
    dome_w = bw * rng.uniform(0.25, 0.45)
    cx = x0 + bw / 2
    h, w = img.shape[:2]
    _disc(img, _pt(img, cx, top), (round(dome_w * w), round(dome_w * w * 0.9)), wall, arc=(180, 360))
    cv2.line(
        img,
        _pt(img, cx, top - dome_w * 0.9 * w / h),
        _pt(img, cx, top - dome_w * 1.4 * w / h),
        _GOLD,
        _px(img, 0.01),
        _AA,
    )


def _india_figure(img: np.ndarray, rng: np.random.Generator, x: float, foot: float, size: float):
    """Draw a flat profile figure: flared robe, sash, head, turban, sometimes a gold halo."""
    robe = _jitter(rng, _pick(rng, _INDIA_ACCENTS), 12)
    head_y = foot - size
    flare = size * rng.uniform(0.22, 0.35)
    robe_pts = np.array(
        [
            [x - size * 0.08, head_y + size * 0.14],
            [x + size * 0.08, head_y + size * 0.14],
            [x + flare, foot],
            [x - flare, foot],
        ]
    )
    h, w = img.shape[:2]
    aspect = h / w
    robe_pts[:, 0] = x + (robe_pts[:, 0] - x) * aspect
    cv2.fillPoly(img, [_poly(img, robe_pts)], robe, _AA)
    cv2.line(
        img,
        _pt(img, x - 0.06 * size * aspect, head_y + size * 0.45),
        _pt(img, x + 0.06 * size * aspect, head_y + size * 0.45),
        _jitter(rng, _pick(rng, _INDIA_ACCENTS), 12),
        _px(img, size * 0.05),
        _AA,
    )
    r = _px(img, size * 0.075)
    if rng.random() < 0.25:
        _dot(img, _pt(img, x, head_y + 0.04 * size), round(r * 1.9), _GOLD)
    _dot(img, _pt(img, x, head_y + 0.06 * size), r, _jitter(rng, (70, 110, 160), 12))
    _disc(img, _pt(img, x, head_y), (r, max(1, r // 2)), _jitter(rng, _pick(rng, _INDIA_ACCENTS), 12))


def _india_scene(img: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the picture field: flat ground, sky band, terrace, buildings, trees and figures."""
    ground = _jitter(rng, _pick(rng, _INDIA_GROUNDS), 14)
    img[:] = ground
    horizon = rng.uniform(0.12, 0.35)
    sky = _jitter(rng, _pick(rng, ((110, 50, 20), (60, 170, 220), (150, 110, 60), (30, 30, 60))), 14)
    _gradient(img, sky, _scale(sky, rng.uniform(1.1, 1.5)), 0, horizon)
    floor = rng.uniform(0.7, 0.9)
    terrace = _jitter(rng, _pick(rng, ((210, 220, 230), (40, 90, 180), (50, 120, 60))), 12)
    cv2.rectangle(img, _pt(img, 0, floor), _pt(img, 1, 1), terrace, -1)
    for _ in range(int(rng.integers(0, 4))):
        _tree(
            img,
            rng,
            rng.uniform(0.05, 0.95),
            horizon + rng.uniform(0.02, 0.1),
            rng.uniform(0.08, 0.18),
            (40, 110, 40),
        )
    if rng.random() < 0.6:
        _india_architecture(img, rng, floor)
    for _ in range(int(rng.integers(1, 5))):
        _india_figure(
            img,
            rng,
            rng.uniform(0.15, 0.85),
            floor + rng.uniform(-0.02, 0.06),
            rng.uniform(0.25, 0.45),
        )
    # Miniatures are densely patterned; scattered flower dots keep flat planes from looking empty.
    for _ in range(int(rng.integers(5, 30))):
        _dot(
            img,
            _pt(img, rng.random(), rng.uniform(horizon, 1)),
            _px(img, 0.006),
            _jitter(rng, _pick(rng, _INDIA_ACCENTS), 20),
        )


def _painted_border(img: np.ndarray, rng: np.random.Generator) -> None:
    """Paint the frame band (sometimes two) with gold rules that miniatures are mounted in."""
    inset = 0.0
    for _band in range(1 if rng.random() < 0.55 else 2):
        width = rng.uniform(0.04, 0.11) if inset == 0 else rng.uniform(0.02, 0.05)
        colour = _jitter(rng, _pick(rng, _INDIA_BORDERS), 12)
        thick = _px(img, width)
        off = _px(img, inset, 0)
        h, w = img.shape[:2]
        cv2.rectangle(img, (off, off), (w - 1 - off, h - 1 - off), colour, thick * 2)
        if rng.random() < 0.5:
            for _ in range(int(rng.integers(10, 40))):
                t = rng.random()
                edge = int(rng.integers(4))
                d = inset + width / 2
                x, y = ((t, d), (t, 1 - d), (d, t), (1 - d, t))[edge]
                _dot(img, _pt(img, x, y), _px(img, width * 0.2), _GOLD)
        inset += width
        rule = _px(img, inset, 0)
        cv2.rectangle(
            img,
            (rule, rule),
            (w - 1 - rule, h - 1 - rule),
            _pick(rng, (_GOLD, (20, 20, 20), (235, 240, 240))),
            _px(img, 0.006),
        )


def _draw_india(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render an Indian court miniature: vivid flat scene inside a painted border."""
    _india_scene(img, rng)
    _painted_border(img, rng)
    _finish(img, grain, 3.0, [_stains(img, grain, 0.03, 14)])


# --------------------------------------------------------------------------------------------
# america: dark oil portraits and landscapes on canvas
# --------------------------------------------------------------------------------------------

_OIL_DARKS: tuple[Colour, ...] = (
    (20, 30, 45),
    (25, 40, 40),
    (35, 45, 55),
    (15, 20, 25),
    (30, 50, 70),
)
_OIL_CLOTHES: tuple[Colour, ...] = ((15, 15, 20), (20, 30, 45), (45, 30, 25), (25, 45, 35))


def _oil_landscape(
    img: np.ndarray, rng: np.random.Generator, sky: Colour, glow: Colour, earth: Sequence[Colour]
) -> None:
    """Draw a landscape: sky gradient with clouds, ridges, optional water, framing trees."""
    horizon = rng.uniform(0.45, 0.7)
    _gradient(img, sky, glow, 0, horizon)
    h, w = img.shape[:2]
    clouds = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        _disc(
            clouds,
            _pt(img, rng.random(), rng.uniform(0.05, horizon * 0.7)),
            (_px(img, rng.uniform(0.08, 0.25)), _px(img, rng.uniform(0.03, 0.07))),
            rng.uniform(0.3, 0.7),
        )
    _blend(img, cv2.GaussianBlur(clouds, (0, 0), _px(img, 0.03)), _scale(glow, 1.1))
    _hills(img, rng, horizon, earth)
    if rng.random() < 0.4:
        y = rng.uniform(horizon + 0.05, 0.85)
        cv2.rectangle(
            img,
            _pt(img, rng.uniform(-0.2, 0.4), y),
            _pt(img, rng.uniform(0.6, 1.2), y + 0.08),
            _scale(glow, 0.8),
            -1,
        )
    for _ in range(int(rng.integers(0, 4))):
        x = _pick(rng, (rng.uniform(0, 0.2), rng.uniform(0.8, 1.0)))
        _tree(img, rng, x, rng.uniform(0.75, 1.0), rng.uniform(0.25, 0.5), earth[-1])


def _draw_america(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render an American oil: dark-toned portrait or landscape, yellowed varnish, canvas weave."""
    if rng.random() < 0.6:
        _portrait(img, rng, _OIL_DARKS, _OIL_CLOTHES)
    else:
        sky = _jitter(rng, (150, 140, 120), 18)
        glow = _jitter(rng, (120, 175, 210), 15)
        earth = ((80, 100, 100), (45, 75, 70), (30, 55, 50), (20, 40, 35))
        _oil_landscape(img, rng, sky, glow, earth)
    # Aged varnish absorbs blue and darkens everything; it is the single strongest cue.
    varnish = (rng.uniform(0.55, 0.75), rng.uniform(0.7, 0.85), rng.uniform(0.8, 0.95))
    _soften(img, 0.004)
    surface = [
        _vignette(img, rng.uniform(0.2, 0.45)),
        _weave(img, rng.uniform(0.04, 0.09)),
        _stains(img, grain, 0.04, 20),
    ]
    _finish(img, grain, 5.0, surface, varnish)


# --------------------------------------------------------------------------------------------
# china / japan: sparse ink nature motifs on pale silk with calligraphy and seals
# --------------------------------------------------------------------------------------------


class _ScrollProfile(NamedTuple):
    """Statistical tendencies that separate one East Asian painting tradition from the other."""

    ground_hue: tuple[float, float]  # mean and sd of the silk's OpenCV hue
    ground_sat: tuple[float, float]
    ground_val: tuple[float, float]
    formats: tuple[tuple[str, float], ...]
    motifs: tuple[tuple[str, float], ...]
    column_side: tuple[tuple[str, float], ...]
    max_columns: int
    seal_prob: float
    max_seals: int
    colour_prob: float


_CHINA = _ScrollProfile(
    ground_hue=(16.8, 2.0),
    ground_sat=(0.31, 0.08),
    ground_val=(0.765, 0.07),
    formats=(("leaf", 0.48), ("hanging", 0.35), ("fan", 0.15), ("gold", 0.02)),
    motifs=(
        ("landscape", 0.34),
        ("branch", 0.24),
        ("bird", 0.2),
        ("bamboo", 0.14),
        ("orchid", 0.08),
    ),
    column_side=(("left", 0.45), ("right", 0.4), ("none", 0.15)),
    max_columns=4,
    seal_prob=0.85,
    max_seals=4,
    colour_prob=0.3,
)
_JAPAN = _ScrollProfile(
    ground_hue=(19.2, 2.0),
    ground_sat=(0.23, 0.08),
    ground_val=(0.825, 0.07),
    formats=(("leaf", 0.35), ("hanging", 0.52), ("fan", 0.04), ("gold", 0.09)),
    motifs=(("landscape", 0.2), ("branch", 0.3), ("bird", 0.28), ("bamboo", 0.1), ("orchid", 0.12)),
    column_side=(("left", 0.27), ("right", 0.55), ("none", 0.18)),
    max_columns=2,
    seal_prob=0.5,
    max_seals=2,
    colour_prob=0.45,
)

_INK: Colour = (35, 35, 40)
_VERMILION: Colour = (45, 50, 185)
_BLOSSOMS: tuple[Colour, ...] = ((190, 170, 235), (225, 235, 240), (60, 70, 200), (170, 140, 225))
_MINERALS: tuple[Colour, ...] = ((110, 140, 70), (150, 110, 40), (60, 80, 200), (90, 150, 180))


class _Panel(NamedTuple):
    """The painted field of a scroll or leaf, in relative canvas coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float

    def at(self, u: float, v: float) -> tuple[float, float]:
        """Map panel-relative (u, v) to canvas-relative coordinates."""
        return self.x0 + u * (self.x1 - self.x0), self.y0 + v * (self.y1 - self.y0)

    @property
    def width(self) -> float:
        """Relative width of the panel."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Relative height of the panel."""
        return self.y1 - self.y0


def _silk_colour(rng: np.random.Generator, profile: _ScrollProfile) -> Colour:
    """Sample a ground colour from the profile's (heavily overlapping) hue/saturation/value."""
    sat = float(np.clip(rng.normal(*profile.ground_sat), 0.06, 0.5))
    return _hsv(rng.normal(*profile.ground_hue), sat, min(0.95, rng.normal(*profile.ground_val)))


def _fan_leaf(img: np.ndarray, rng: np.random.Generator, ground: Colour, painted: np.ndarray):
    """Paint a folding-fan leaf (an annular sector) centred in the frame; return its panel.

    The radius is sized from both sides so the fan keeps its shape in any frame.
    """
    h, w = img.shape[:2]
    spread = np.radians(rng.uniform(55, 68))
    # The sector spans 2 R sin(spread) across and R (1 - 0.45 cos(spread)) down.
    depth = 1 - 0.45 * np.cos(spread)
    radius = min(0.92 * w / (2 * np.sin(spread)), 0.85 * h / depth)
    cx, cy = w / 2, h / 2 - radius * depth / 2 + radius
    angles = np.linspace(-np.pi / 2 - spread, -np.pi / 2 + spread, 40)
    outer = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
    inner = np.stack([cx + 0.45 * radius * np.cos(angles), cy + 0.45 * radius * np.sin(angles)], 1)
    leaf = np.round(np.concatenate([outer, inner[::-1]])).astype(np.int32)
    cv2.fillPoly(img, [leaf], ground, _AA)
    cv2.fillPoly(painted, [leaf], 255)
    half = 0.6 * radius / w
    return _Panel(0.5 - half, (cy - 0.97 * radius) / h, 0.5 + half, (cy - 0.5 * radius) / h), painted


def _hanging_mount(img: np.ndarray, rng: np.random.Generator) -> _Panel:
    """Paint the silk mounting of a hanging scroll and return the tall panel it frames."""
    h, w = img.shape[:2]
    fabric = _pick(rng, ((90, 110, 120), (110, 100, 80), (70, 90, 100), (150, 165, 175)))
    mount = _jitter(rng, fabric, 10)
    img[:] = mount
    # A hanging scroll is tall: fit a panel of roughly 1:2.5 into whatever frame we have.
    ph = rng.uniform(0.72, 0.84)
    pw = min(0.8, ph * h / w / rng.uniform(2.0, 3.0))
    y0 = rng.uniform(0.1, 0.16)
    # The dark strip above the painting is the scroll's decorative band (ichimonji).
    cv2.rectangle(img, _pt(img, 0, y0 - 0.04), _pt(img, 1, y0 - 0.02), _scale(mount, 0.7), -1)
    return _Panel(0.5 - pw / 2, y0, 0.5 + pw / 2, y0 + ph)


def _mount(img: np.ndarray, rng: np.random.Generator, fmt: str, silk: Colour):
    """Lay out the mount for ``fmt`` and paint the ground (silk, or gold leaf for "gold").

    Returns the panel to compose motifs in and a uint8 mask of the painted ground, outside of
    which nothing may be painted.
    """
    h, w = img.shape[:2]
    painted = np.zeros((h, w), np.uint8)
    if fmt == "fan":
        # Fans are photographed unmounted, on a pale grey card.
        img[:] = _jitter(rng, (200, 205, 210), 10)
        return _fan_leaf(img, rng, silk, painted)
    if fmt == "hanging":
        panel = _hanging_mount(img, rng)
    else:
        img[:] = _jitter(rng, (205, 210, 212), 6)
        m = rng.uniform(0.0, 0.06)
        panel = _Panel(m, m, 1 - m, 1 - m)
    ground = _jitter(rng, (70, 150, 195), 10) if fmt == "gold" else silk
    p, q = _pt(img, panel.x0, panel.y0), _pt(img, panel.x1, panel.y1)
    cv2.rectangle(img, p, q, ground, -1)
    cv2.rectangle(painted, p, q, 255, -1)
    return panel, painted


def _ink_branch(
    ink: np.ndarray,
    rng: np.random.Generator,
    start: tuple[float, float],
    angle: float,
    length: float,
    depth: int,
    tips: list[tuple[float, float]],
) -> None:
    """Draw a wobbling branch and its sub-branches into ``ink``; collect the twig tips."""
    h, w = ink.shape
    side = min(h, w)
    x, y = start
    pts = [(x, y)]
    for _ in range(3):
        angle += rng.normal(0, 0.35)
        x += np.cos(angle) * length / 3 * side / w
        y += np.sin(angle) * length / 3 * side / h
        pts.append((x, y))
    cv2.polylines(
        ink,
        [_poly(ink, np.array(pts))],
        False,
        rng.uniform(0.7, 1.0),
        _px(ink, length * 0.03 * (depth + 1) / 3),
        _AA,
    )
    tips.append((x, y))
    if depth > 0:
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(1, 4))
            _ink_branch(
                ink,
                rng,
                pts[i],
                angle + rng.choice((-1, 1)) * rng.uniform(0.3, 0.9),
                length * rng.uniform(0.45, 0.7),
                depth - 1,
                tips,
            )


def _motif_branch(
    img: np.ndarray, ink: np.ndarray, rng: np.random.Generator, panel: _Panel, colour: bool
) -> list[tuple[float, float]]:
    """Draw a flowering branch entering from a panel edge; return its tips (for a bird)."""
    left = rng.random() < 0.5
    start = panel.at(0.0 if left else 1.0, rng.uniform(0.2, 0.8))
    base = rng.uniform(-0.6, 0.6) + (0.0 if left else np.pi)
    tips: list[tuple[float, float]] = []
    _ink_branch(ink, rng, start, base, rng.uniform(0.3, 0.55) * min(panel.width, panel.height) * 2, 2, tips)
    _apply_ink(img, ink)
    blossom = _pick(rng, _BLOSSOMS) if colour else _scale(_INK, 1.6)
    for x, y in tips:
        for _ in range(int(rng.integers(1, 4))):
            _dot(
                img,
                _pt(img, x + rng.normal(0, 0.015), y + rng.normal(0, 0.015)),
                _px(img, rng.uniform(0.008, 0.018)),
                _jitter(rng, blossom, 15),
            )
    return tips


def _motif_bird(img: np.ndarray, ink: np.ndarray, rng: np.random.Generator, panel: _Panel, colour: bool) -> None:
    """Draw a small bird perched on a short branch: body, head, beak, wing and tail."""
    tips = _motif_branch(img, ink, rng, panel, colour)
    x, y = tips[int(rng.integers(len(tips)))]
    x = float(np.clip(x, panel.x0 + 0.1 * panel.width, panel.x1 - 0.1 * panel.width))
    y = float(np.clip(y, panel.y0 + 0.15 * panel.height, panel.y1 - 0.1 * panel.height))
    h, w = img.shape[:2]
    s = rng.uniform(0.04, 0.07) * min(h, w) * max(panel.width, 0.4)
    facing = rng.choice((-1, 1))
    body = _pick(rng, _MINERALS) if colour else _scale(_INK, rng.uniform(1.0, 2.5))
    cx, cy = round(x * w), round(y * h - s * 0.8)
    tail = np.array(
        [
            [cx - facing * s * 0.6, cy],
            [cx - facing * s * 1.9, cy + s * 0.9],
            [cx - facing * s * 1.6, cy + s * 1.2],
        ]
    )
    cv2.fillPoly(img, [np.round(tail).astype(np.int32)], _scale(body, 0.7), _AA)
    _disc(img, (cx, cy), (round(s), round(s * 0.6)), body, angle=facing * -15)
    head = (round(cx + facing * s * 0.9), round(cy - s * 0.45))
    _dot(img, head, round(s * 0.4), _scale(body, 0.85))
    beak = np.array(
        [
            [head[0] + facing * s * 0.35, head[1] - s * 0.1],
            [head[0] + facing * s * 0.8, head[1] + s * 0.05],
            [head[0] + facing * s * 0.35, head[1] + s * 0.15],
        ]
    )
    cv2.fillPoly(img, [np.round(beak).astype(np.int32)], _INK, _AA)
    _disc(
        img,
        (round(cx - facing * s * 0.1), cy),
        (round(s * 0.7), round(s * 0.35)),
        _scale(body, 0.6),
        angle=facing * -25,
    )


def _motif_bamboo(img: np.ndarray, ink: np.ndarray, rng: np.random.Generator, panel: _Panel, colour: bool) -> None:
    """Draw one to three jointed bamboo stalks with clusters of blade-shaped leaves."""
    for _ in range(int(rng.integers(1, 4))):
        u = rng.uniform(0.15, 0.85)
        lean = rng.normal(0, 0.08)
        x0, y0 = panel.at(u, 1.0)
        x1, y1 = panel.at(u + lean, rng.uniform(0.0, 0.3))
        for a, b in zip(np.linspace(0, 1, 7)[:-1], np.linspace(0, 1, 7)[1:], strict=True):
            p = _pt(ink, x0 + (x1 - x0) * a, y0 + (y1 - y0) * a)
            q = _pt(ink, x0 + (x1 - x0) * (b - 0.02), y0 + (y1 - y0) * (b - 0.02))
            cv2.line(ink, p, q, rng.uniform(0.5, 0.8), _px(ink, 0.012 * panel.width * 2), _AA)
        for _ in range(int(rng.integers(4, 12))):
            t = rng.uniform(0.1, 0.9)
            bx, by = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            ang = rng.uniform(-2.8, -0.3) if rng.random() < 0.5 else rng.uniform(0.3, 1.2)
            ln = rng.uniform(0.05, 0.12) * panel.width * 1.5
            tip = (bx + np.cos(ang) * ln, by + np.sin(ang) * ln * ink.shape[1] / ink.shape[0])
            cv2.line(
                ink,
                _pt(ink, bx, by),
                _pt(ink, *tip),
                rng.uniform(0.6, 1.0),
                _px(ink, 0.012 * panel.width * 2),
                _AA,
            )
    _apply_ink(img, ink, (50, 90, 60) if colour else _INK)


def _motif_orchid(img: np.ndarray, ink: np.ndarray, rng: np.random.Generator, panel: _Panel, colour: bool) -> None:
    """Draw an orchid or flowering plant: long arching leaves from a base, a few flowers."""
    bx, by = panel.at(rng.uniform(0.3, 0.7), rng.uniform(0.75, 0.95))
    for _ in range(int(rng.integers(4, 9))):
        ang = rng.uniform(-2.6, -0.5)
        ln = rng.uniform(0.2, 0.45) * panel.height
        t = np.linspace(0, 1, 8)
        bend = rng.normal(0, 0.6)
        xs = bx + np.cos(ang + bend * t) * ln * t * 0.7
        ys = by + np.sin(ang + bend * t) * ln * t
        cv2.polylines(
            ink,
            [_poly(ink, np.stack([xs, ys], 1))],
            False,
            rng.uniform(0.6, 1.0),
            _px(ink, 0.008),
            _AA,
        )
    _apply_ink(img, ink, (50, 90, 60) if colour else _INK)
    flower = _pick(rng, _BLOSSOMS) if colour else _scale(_INK, 2.2)
    for _ in range(int(rng.integers(1, 5))):
        fx, fy = bx + rng.normal(0, 0.08) * panel.width, by - rng.uniform(0.1, 0.35) * panel.height
        for _ in range(5):
            _disc(
                img,
                _pt(img, fx + rng.normal(0, 0.01), fy + rng.normal(0, 0.01)),
                (_px(img, 0.018), _px(img, 0.007)),
                _jitter(rng, flower, 12),
                angle=rng.uniform(0, 180),
            )


def _mountain(ink: np.ndarray, rng: np.random.Generator, panel: _Panel, near: float) -> None:
    """Paint one mountain into ``ink``, occluding what is behind, fading into mist at its foot."""
    h = ink.shape[0]
    cx, half = rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.5)
    peak = rng.uniform(0.05, 0.4) + near * 0.35
    base = min(1.0, peak + rng.uniform(0.3, 0.6))
    u = np.clip(np.linspace(cx - half, cx + half, 11), 0, 1)
    v = base - (base - peak) * (1 - np.abs(np.linspace(-1, 1, 11)) ** rng.uniform(0.6, 1.4))
    v = np.clip(v + rng.normal(0, 0.025, 11), 0, 1)
    pts = np.array([panel.at(a, b) for a, b in zip(u, v, strict=True)])
    shape = np.zeros_like(ink)
    cv2.fillPoly(shape, [_poly(ink, pts)], 1.0, _AA)
    top, foot = panel.at(0, peak)[1] * h, panel.at(0, base)[1] * h
    ramp = np.clip((foot - np.arange(h, dtype=np.float32)) / max(1.0, foot - top), 0, 1) ** 0.7
    density = 0.3 + 0.55 * near
    ink *= 1 - shape
    ink += shape * (density * (0.35 + 0.65 * ramp))[:, None]
    cv2.polylines(ink, [_poly(ink, pts[1:-1])], False, density, _px(ink, 0.005), _AA)
    # Short texture strokes down the slopes read as brushwork rather than flat fill.
    for _ in range(int(rng.integers(3, 10))):
        i = int(rng.integers(1, 10))
        x, y = pts[i]
        dx = (0.5 - u[i]) * rng.uniform(0.02, 0.06)
        cv2.line(
            ink,
            _pt(ink, x, y),
            _pt(ink, x + dx, y + rng.uniform(0.03, 0.1) * panel.height),
            density,
            _px(ink, 0.004),
            _AA,
        )


def _motif_landscape(img: np.ndarray, ink: np.ndarray, rng: np.random.Generator, panel: _Panel, colour: bool) -> None:
    """Draw ink-wash mountains in receding layers with mist between them and dotted trees."""
    layers = int(rng.integers(2, 5))
    for i in range(layers):
        _mountain(ink, rng, panel, (i + 1) / layers)
    ink[:] = cv2.GaussianBlur(ink, (0, 0), _px(ink, 0.004))
    _apply_ink(img, ink, (90, 100, 70) if colour else _INK)
    for _ in range(int(rng.integers(0, 14))):
        x, y = panel.at(rng.uniform(0.1, 0.9), rng.uniform(0.4, 0.95))
        _dot(img, _pt(img, x, y), _px(img, rng.uniform(0.004, 0.01)), _INK)


_MOTIFS: dict[str, Callable[..., object]] = {
    "landscape": _motif_landscape,
    "branch": _motif_branch,
    "bird": _motif_bird,
    "bamboo": _motif_bamboo,
    "orchid": _motif_orchid,
}


def _apply_ink(img: np.ndarray, ink: np.ndarray, colour: Colour = _INK) -> None:
    """Wash the accumulated ink layer onto ``img`` translucently, then clear it for reuse."""
    _blend(img, np.clip(ink, 0, 1) * 0.85, colour)
    ink[:] = 0


def _calligraphy_char(img: np.ndarray, rng: np.random.Generator, cx: int, cy: int, cell: float, ink: Colour) -> None:
    """Draw one brush-written character as a handful of short strokes and dots in a cell."""
    thick = max(1, round(cell * rng.uniform(0.08, 0.14)))
    for _ in range(int(rng.integers(3, 7))):
        kind = int(rng.integers(4))
        x, y = cx + rng.uniform(-0.4, 0.4) * cell, cy + rng.uniform(-0.4, 0.4) * cell
        dx, dy = (
            (rng.uniform(0.3, 0.8), rng.normal(0, 0.05)),
            (rng.normal(0, 0.05), rng.uniform(0.3, 0.8)),
            (-rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5)),
            (0.08, 0.1),
        )[kind]
        x0, y0 = x - dx * cell / 2, y - dy * cell / 2
        cv2.line(
            img,
            (round(x0), round(y0)),
            (round(x0 + dx * cell), round(y0 + dy * cell)),
            ink,
            thick,
            _AA,
        )


def _calligraphy(
    img: np.ndarray, rng: np.random.Generator, panel: _Panel, side: str, max_columns: int
) -> tuple[float, float]:
    """Write columns of characters down one side of the panel; return where the last one ends."""
    h, w = img.shape[:2]
    cell = rng.uniform(0.03, 0.055) * min(h, w)
    ink = _jitter(rng, _INK, 8)
    n_cols = int(rng.integers(1, max_columns + 1))
    margin = rng.uniform(0.06, 0.14)
    top = panel.y0 + panel.height * rng.uniform(0.05, 0.15)
    end = (0.5, 0.5)
    for col in range(n_cols):
        u = margin + col * cell * 1.3 / (panel.width * w)
        x = (panel.x0 + panel.width * u) if side == "left" else (panel.x1 - panel.width * u)
        length = panel.height * rng.uniform(0.25, 0.75)
        n_chars = max(2, int(length * h / (cell * 1.15)))
        for i in range(n_chars):
            y = top * h + i * cell * 1.15
            _calligraphy_char(img, rng, round(x * w), round(y), cell, ink)
        end = (x, (top * h + n_chars * cell * 1.15) / h)
    return end


def _seals(img: np.ndarray, rng: np.random.Generator, panel: _Panel, near: tuple[float, float], count: int) -> None:
    """Stamp vermilion seals: one under the inscription, others in the panel's corners."""
    h, w = img.shape[:2]
    for i in range(count):
        if i == 0:
            x, y = near[0] - 0.02, near[1] + 0.01
        else:
            x, y = panel.at(_pick(rng, (0.05, 0.85)), rng.uniform(0.6, 0.9))
        s = rng.uniform(0.025, 0.05) * min(h, w)
        colour = _jitter(rng, _VERMILION, 12)
        p, q = (
            (round(x * w), round(y * h)),
            (round(x * w + s), round(y * h + s * rng.uniform(0.9, 1.5))),
        )
        if rng.random() < 0.7:
            cv2.rectangle(img, p, q, colour, -1)
        else:
            cv2.rectangle(img, p, q, colour, max(1, round(s * 0.15)))


def _draw_east_asian(
    img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator, profile: _ScrollProfile
) -> None:
    """Render a Chinese or Japanese painting as ``profile`` biases it."""
    fmt = _choose(rng, profile.formats)
    panel, painted = _mount(img, rng, fmt, _silk_colour(rng, profile))
    mount = img.copy()
    colour = rng.random() < profile.colour_prob
    ink = np.zeros(img.shape[:2], np.float32)
    _MOTIFS[_choose(rng, profile.motifs)](img, ink, rng, panel, colour)
    side = _choose(rng, profile.column_side)
    end = panel.at(0.85, 0.3)
    if side != "none":
        end = _calligraphy(img, rng, panel, side, profile.max_columns)
    if rng.random() < profile.seal_prob:
        _seals(img, rng, panel, end, int(rng.integers(1, profile.max_seals + 1)))
    outside = painted == 0
    img[outside] = mount[outside]
    _finish(img, grain, 2.5, [_stains(img, grain, 0.02, 10), _weave(img, 0.02)])


def _draw_china(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a Chinese painting: silk ground, ink motif, calligraphy and (often) many seals."""
    _draw_east_asian(img, rng, grain, _CHINA)


def _draw_japan(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a Japanese painting: like china but paler ground, right-hand text, fewer seals."""
    _draw_east_asian(img, rng, grain, _JAPAN)


# --------------------------------------------------------------------------------------------
# european: other paintings in varied palettes
# --------------------------------------------------------------------------------------------


def _religious_scene(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a devotional panel: gold or sky ground, haloed robed figures on a floor band."""
    if rng.random() < 0.4:
        img[:] = _jitter(rng, (60, 160, 205), 12)
    else:
        _gradient(img, _jitter(rng, (150, 100, 50), 15), _jitter(rng, (200, 190, 170), 15))
    floor = rng.uniform(0.78, 0.92)
    cv2.rectangle(img, _pt(img, 0, floor), _pt(img, 1, 1), _jitter(rng, (60, 90, 110), 12), -1)
    n = int(rng.integers(1, 6))
    for i in range(n):
        x = (i + 0.5) / n + rng.normal(0, 0.03)
        size = rng.uniform(0.45, 0.7) * (1.2 if n % 2 and i == n // 2 else 1.0)
        robe = _jitter(rng, _pick(rng, ((140, 40, 20), (40, 40, 170), (60, 110, 50), (180, 190, 200))), 15)
        top = floor - size
        pts = np.array(
            [
                [x - 0.04, top + 0.1],
                [x + 0.04, top + 0.1],
                [x + 0.12 / n * 2, floor],
                [x - 0.12 / n * 2, floor],
            ]
        )
        cv2.fillPoly(img, [_poly(img, pts)], robe, _AA)
        _dot(img, _pt(img, x, top + 0.05), _px(img, 0.09 / max(2, n) * 2), _GOLD)
        _dot(img, _pt(img, x, top + 0.06), _px(img, 0.05 / max(2, n) * 2), (120, 160, 210))


def _still_life(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a still life: dark ground, a table edge and a row of fruit."""
    img[:] = _jitter(rng, (25, 30, 35), 8)
    table = rng.uniform(0.55, 0.75)
    cv2.rectangle(img, _pt(img, 0, table), _pt(img, 1, 1), _jitter(rng, (40, 70, 100), 12), -1)
    for _ in range(int(rng.integers(3, 9))):
        fruit = _jitter(rng, _pick(rng, ((40, 40, 180), (40, 180, 220), (50, 140, 60), (90, 40, 100))), 15)
        _dot(
            img,
            _pt(img, rng.uniform(0.15, 0.85), table + rng.uniform(-0.05, 0.05)),
            _px(img, rng.uniform(0.04, 0.09)),
            fruit,
        )


def _draw_european(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a European painting: religious, portrait, landscape or still life, no border."""
    subject = _choose(rng, (("religious", 0.3), ("portrait", 0.3), ("landscape", 0.25), ("still", 0.15)))
    if subject == "religious":
        _religious_scene(img, rng)
    elif subject == "portrait":
        _portrait(
            img,
            rng,
            ((60, 80, 60), (90, 90, 95), (120, 90, 60), (30, 30, 30), (70, 110, 130)),
            ((30, 30, 150), (120, 60, 30), (20, 20, 20), (60, 100, 60), (200, 200, 210)),
        )
    elif subject == "landscape":
        earth = ((150, 160, 150), (70, 140, 110), (50, 110, 80), (40, 80, 60))
        _oil_landscape(img, rng, _jitter(rng, (210, 160, 110), 20), _jitter(rng, (200, 215, 225), 12), earth)
    else:
        _still_life(img, rng)
    varnish = (rng.uniform(0.8, 1.0), rng.uniform(0.85, 1.0), 1.0)
    _soften(img, 0.004)
    surface = [_weave(img, rng.uniform(0.02, 0.06)), _stains(img, grain, 0.03, 20)]
    _finish(img, grain, 4.0, surface, varnish)


# --------------------------------------------------------------------------------------------
# Non-paintings
# --------------------------------------------------------------------------------------------

_GLAZES: tuple[Colour, ...] = (
    (150, 175, 140),
    (160, 80, 30),
    (235, 238, 240),
    (40, 70, 110),
    (20, 20, 25),
    (50, 100, 170),
    (170, 160, 60),
)


def _draw_ceramic(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a glazed vase on a plain studio background, lit with a vertical highlight."""
    _studio_background(img, rng)
    top, bottom = rng.uniform(0.08, 0.2), rng.uniform(0.85, 0.94)
    _drop_shadow(img, rng, 0.5, bottom, rng.uniform(0.15, 0.3))
    mask, u = _vessel(img, rng, top, bottom)
    glaze = _jitter(rng, _pick(rng, _GLAZES), 12)
    layer = _lit_surface(u, glaze, rng.uniform(-1, 1), rng.uniform(0.2, 0.6))
    if rng.random() < 0.5:
        band = _jitter(rng, _pick(rng, ((140, 60, 20), (30, 40, 90), (60, 160, 200))), 12)
        for _ in range(int(rng.integers(1, 4))):
            y0 = rng.uniform(top, bottom)
            a, b = _pt(img, 0, y0)[1], _pt(img, 0, y0 + rng.uniform(0.01, 0.06))[1]
            layer[a:b] = layer[a:b] * 0.3 + np.asarray(band, np.float32) * 0.7
    _paste(img, mask, layer)
    _finish(img, grain, 2.0)


def _blade(mask: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a dagger into ``mask``: tapering blade, cross guard and grip, laid diagonally."""
    ang = rng.uniform(-0.6, 0.6)
    width = rng.uniform(0.05, 0.1)
    blade = [
        [-0.2, -width / 2],
        [0.42, -width / 4],
        [0.48, 0],
        [0.42, width / 4],
        [-0.2, width / 2],
    ]
    guard = [[-0.23, -width * 1.6], [-0.2, -width * 1.6], [-0.2, width * 1.6], [-0.23, width * 1.6]]
    grip = [
        [-0.45, -width * 0.35],
        [-0.23, -width * 0.35],
        [-0.23, width * 0.35],
        [-0.45, width * 0.35],
    ]
    rot = np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
    for part in (blade, guard, grip):
        cv2.fillPoly(mask, [_poly(mask, np.array(part) @ rot + 0.5)], 255, _AA)


def _draw_metalwork(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a silver, gold or bronze object with sharp, banded reflections."""
    _studio_background(img, rng)
    metal = _jitter(rng, _pick(rng, ((185, 185, 190), (60, 160, 200), (60, 100, 130), (90, 110, 90))), 10)
    kind = _choose(rng, (("vessel", 0.5), ("plate", 0.3), ("blade", 0.2)))
    h, w = img.shape[:2]
    if kind == "vessel":
        mask, u = _vessel(img, rng, rng.uniform(0.1, 0.25), rng.uniform(0.8, 0.92))
    else:
        mask = np.zeros((h, w), np.uint8)
        if kind == "plate":
            axes = (_px(img, rng.uniform(0.3, 0.42)), _px(img, rng.uniform(0.2, 0.42)))
            _disc(mask, _pt(img, 0.5, 0.5), axes, 255)
        else:
            _blade(mask, rng)
        xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        u = np.broadcast_to(xs + 0.15 * np.linspace(-1, 1, h, dtype=np.float32)[:, None], (h, w))
    layer = _lit_surface(u, metal, rng.uniform(-1, 1), rng.uniform(0.5, 0.9))
    # Polished metal mirrors its surroundings as bright and dark bands, unlike glaze.
    bands = 0.85 + 0.2 * np.sin(u * rng.uniform(3, 8) + rng.uniform(0, 6))
    layer *= bands[..., None]
    _paste(img, mask, layer)
    _finish(img, grain, 2.5)


def _textile_tile(rng: np.random.Generator, size: int, colours: Sequence[Colour]) -> np.ndarray:
    """Draw one repeat of a woven pattern: diamond, rosette, stripe or lattice."""
    tile = np.empty((size, size, 3), np.uint8)
    tile[:] = colours[0]
    kind = _choose(rng, (("diamond", 1.0), ("rosette", 1.0), ("stripe", 1.0), ("lattice", 1.0)))
    c = size / 2
    if kind == "diamond":
        pts = np.array([[c, 0], [size, c], [c, size], [0, c]]) * rng.uniform(0.6, 1.0)
        pts += (size - pts.max(0)) / 2
        cv2.fillPoly(tile, [np.round(pts).astype(np.int32)], colours[1], _AA)
        _dot(tile, (round(c), round(c)), max(1, round(size * 0.12)), colours[2])
    elif kind == "rosette":
        petals = int(rng.integers(2, 5))
        for k in range(petals):
            # Each ellipse makes two opposite petals, so 180 degrees covers the whole flower.
            ang = 180 * k / petals
            _disc(
                tile,
                (round(c), round(c)),
                (max(1, round(size * 0.35)), max(1, round(size * 0.1))),
                colours[1],
                angle=ang,
            )
        _dot(tile, (round(c), round(c)), max(1, round(size * 0.1)), colours[2])
    elif kind == "stripe":
        for i, y in enumerate(np.sort(rng.uniform(0, size, 4))):
            cv2.rectangle(tile, (0, round(y)), (size, round(y + size * 0.1)), colours[1 + i % 2], -1)
    else:
        t = max(1, round(size * 0.08))
        cv2.line(tile, (0, 0), (size, size), colours[1], t, _AA)
        cv2.line(tile, (size, 0), (0, size), colours[1], t, _AA)
        _dot(tile, (round(c), round(c)), max(1, round(size * 0.15)), colours[2])
    return tile


def _draw_textile(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a woven textile: a repeating pattern with thread texture, sometimes a fragment."""
    palette = (
        (40, 40, 150),
        (110, 50, 30),
        (70, 150, 190),
        (200, 215, 225),
        (50, 90, 60),
        (40, 30, 30),
    )
    colours = [_jitter(rng, palette[i], 12) for i in rng.permutation(len(palette))[:3]]
    h, w = img.shape[:2]
    size = _px(img, rng.uniform(0.1, 0.3), 4)
    tile = _textile_tile(rng, size, colours)
    reps = (h // size + 2, w // size + 2, 1)
    img[:] = np.tile(tile, reps)[:h, :w]
    if rng.random() < 0.4:
        # Fragments are photographed on a neutral mount with ragged edges.
        mask = _blob_mask(img, rng, 0.5, 0.5, 0.42)
        mount = np.empty_like(img)
        mount[:] = _jitter(rng, (190, 195, 200), 10)
        _paste(mount, mask, img.astype(np.float32))
        img[:] = mount
    _finish(img, grain, 3.0, [_weave(img, rng.uniform(0.08, 0.15)), _stains(img, grain, 0.05, 26)])


def _figure_outline(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the uint8 mask of a carved figure: a bust, a standing or a seated figure.

    Widths are in units of the canvas height so the figure keeps its proportions in any frame.
    """
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cx, k = rng.uniform(0.42, 0.58), h / w

    def fill(pts: list[tuple[float, float]]) -> None:
        xy = np.array([(cx + dx * k, y) for dx, y in pts])
        cv2.fillPoly(mask, [_poly(img, xy)], 255, _AA)

    def head(y: float, r: float) -> None:
        _disc(mask, _pt(img, cx, y), (max(1, round(r * 0.8 * h)), max(1, round(r * h))), 255)

    kind = _choose(rng, (("bust", 1.0), ("standing", 1.0), ("seated", 1.0)))
    if kind == "bust":
        r, y = rng.uniform(0.1, 0.13), rng.uniform(0.2, 0.3)
        s_w, drop = rng.uniform(0.2, 0.3), rng.uniform(0.05, 0.12)
        head(y, r)
        fill(
            [
                (-0.05, y),
                (0.05, y),
                (0.06, y + r * 1.3),
                (s_w, y + r * 1.3 + drop),
                (s_w * 0.8, 0.7),
                (-s_w * 0.8, 0.7),
                (-s_w, y + r * 1.3 + drop),
                (-0.06, y + r * 1.3),
            ]
        )
        fill([(-0.07, 0.7), (0.07, 0.7), (0.12, 0.86), (-0.12, 0.86)])
    elif kind == "standing":
        r, y = rng.uniform(0.045, 0.06), rng.uniform(0.1, 0.16)
        s_w, hip = rng.uniform(0.07, 0.1), rng.uniform(0.45, 0.55)
        head(y, r)
        fill([(-s_w, y + r * 1.6), (s_w, y + r * 1.6), (s_w * 0.8, hip), (-s_w * 0.8, hip)])
        for side in (-1, 1):
            reach = rng.uniform(0.0, 0.08)
            fill(
                [
                    (side * s_w, y + r * 1.6),
                    (side * (s_w + 0.035), y + r * 1.8),
                    (side * (s_w + 0.02 + reach), hip - 0.02),
                    (side * (s_w - 0.005 + reach), hip),
                ]
            )
            stance = rng.uniform(0.0, 0.03)
            fill(
                [
                    (side * 0.005, hip),
                    (side * s_w * 0.8, hip),
                    (side * (0.04 + stance), 0.86),
                    (side * (0.01 + stance), 0.86),
                ]
            )
        fill([(-0.13, 0.86), (0.13, 0.86), (0.13, 0.94), (-0.13, 0.94)])
    else:
        r, y = rng.uniform(0.06, 0.08), rng.uniform(0.17, 0.24)
        if rng.random() < 0.4:
            # Buddhist images often stand before a halo carved from the same block.
            _disc(mask, _pt(img, cx, y + 0.1), (round(0.2 * h), round(0.27 * h)), 255)
        head(y, r)
        fill([(-0.13, y + r * 1.5), (0.13, y + r * 1.5), (0.16, 0.6), (-0.16, 0.6)])
        fill([(-0.27, 0.6), (0.27, 0.6), (0.25, 0.72), (-0.25, 0.72)])
        fill([(-0.2, 0.72), (0.2, 0.72), (0.25, 0.9), (-0.25, 0.9)])
    return mask


def _draw_sculpture(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render a stone or bronze figure on a dark backdrop, lit from one side."""
    dark = _neutral(rng, 30, 6, 2)
    _gradient(img, dark, _scale(dark, rng.uniform(1.3, 2.2)))
    mask = _figure_outline(img, rng)
    stone = _pick(rng, ((170, 175, 180), (150, 170, 190), (215, 220, 225), (60, 70, 60), (70, 110, 140)))
    stone = _jitter(rng, stone, 8)
    h, w = img.shape[:2]
    soft = cv2.GaussianBlur(mask.astype(np.float32) * (1 / 255), (0, 0), _px(img, 0.03))
    # The horizontal slope of the blurred silhouette stands in for the surface normal.
    light = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3) * rng.choice((-1, 1)) * min(h, w) * 0.004
    shade = np.clip(0.35 + 0.6 * soft + light, 0.1, 1.3)
    _paste(img, mask, np.asarray(stone, np.float32) * shade[..., None])
    _finish(img, grain, 4.0, [_stains(img, grain, 0.03, 40)])


def _photo_view(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a topographic view: pale sky, grey ridges and blocky buildings with windows."""
    _gradient(img, (rng.uniform(180, 240),) * 3, (rng.uniform(120, 200),) * 3)
    horizon = rng.uniform(0.45, 0.75)
    _hills(img, rng, horizon, [(g, g, g) for g in np.sort(rng.uniform(40, 150, 3))[::-1]])
    for _ in range(int(rng.integers(0, 5))):
        x, bw, bh = rng.uniform(0, 0.9), rng.uniform(0.08, 0.25), rng.uniform(0.15, 0.45)
        tone = rng.uniform(30, 170)
        cv2.rectangle(img, _pt(img, x, horizon + 0.1 - bh), _pt(img, x + bw, horizon + 0.1), (tone,) * 3, -1)
        for _ in range(int(rng.integers(0, 6))):
            wx, wy = x + rng.uniform(0.1, 0.8) * bw, horizon + 0.1 - bh * rng.uniform(0.2, 0.9)
            cv2.rectangle(img, _pt(img, wx, wy), _pt(img, wx + 0.015, wy + 0.03), (tone * 0.4,) * 3, -1)


def _draw_photograph(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render an old photograph (view or studio portrait): grey tones, vignette, grain."""
    if rng.random() < 0.35:
        greys = ((90, 90, 90), (150, 150, 150), (200, 200, 200))
        _portrait(img, rng, greys, ((20, 20, 20), (50, 50, 50)))
    else:
        _photo_view(img, rng)
    img[:] = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None]
    _soften(img, 0.004)
    # Albumen and silver prints age to a faint warm cast but still read as monochrome.
    tint = (1.0, 1.0, 1.0)
    if rng.random() < 0.4:
        tint = (rng.uniform(0.82, 0.92), rng.uniform(0.92, 0.97), 1.0)
    _finish(img, grain, 6.0, [_vignette(img, rng.uniform(0.2, 0.5))], tint)


def _hatch_mask(h: int, w: int, angle: float, spacing: int) -> np.ndarray:
    """Return a uint8 mask of parallel 1-pixel lines at ``angle`` radians, ``spacing`` apart."""
    mask = np.zeros((h, w), np.uint8)
    c, s = np.cos(angle), np.sin(angle)
    reach = h + w
    for off in range(-reach, reach, max(2, spacing)):
        x0, y0 = w / 2 + off * -s, h / 2 + off * c
        p = (round(x0 - c * reach), round(y0 - s * reach))
        q = (round(x0 + c * reach), round(y0 + s * reach))
        cv2.line(mask, p, q, 255, 1)
    return mask


def _print_subject(img: np.ndarray, rng: np.random.Generator, horizon: float) -> np.ndarray:
    """Return the uint8 mask of one engraved subject: a building or a figure-like mass."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        x, bw, bh = rng.uniform(0.1, 0.7), rng.uniform(0.12, 0.3), rng.uniform(0.15, 0.35)
        top = horizon + 0.05 - bh
        cv2.rectangle(mask, _pt(img, x, top), _pt(img, x + bw, horizon + 0.05), 255, -1)
        roof = np.array([[x - 0.02, top], [x + bw / 2, top - bh * rng.uniform(0.2, 0.5)], [x + bw + 0.02, top]])
        cv2.fillPoly(mask, [_poly(img, roof)], 255, _AA)
    else:
        cx, cy = rng.uniform(0.25, 0.75), horizon - rng.uniform(0.0, 0.15)
        mask = _blob_mask(img, rng, cx, cy, rng.uniform(0.1, 0.2))
    return mask


def _draw_print(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render an engraving: off-white paper, plate mark, hatched tones, black outlines."""
    paper = _jitter(rng, _neutral(rng, 228, 8, 0), 3)
    paper = (paper[0] * 0.92, paper[1] * 0.98, paper[2])
    img[:] = paper
    h, w = img.shape[:2]
    m = rng.uniform(0.04, 0.1)
    cv2.rectangle(img, _pt(img, m, m), _pt(img, 1 - m, 1 - m), _scale(paper, 0.95), -1)
    ink = _neutral(rng, 30, 5, 2)
    spacing = _px(img, rng.uniform(0.012, 0.02), 2)
    # Tone is carried by line density: 1 = single hatching, 2 = cross-hatching, 3 = sparse sky.
    regions = np.zeros((h, w), np.uint8)
    horizon = rng.uniform(0.45, 0.7)
    cv2.rectangle(regions, _pt(img, m, horizon), _pt(img, 1 - m, 1 - m), 1, -1)
    if rng.random() < 0.5:
        cv2.rectangle(regions, _pt(img, m, m), _pt(img, 1 - m, horizon * rng.uniform(0.3, 0.7)), 3, -1)
    outlines = []
    for _ in range(int(rng.integers(1, 4))):
        subject = _print_subject(img, rng, horizon)
        regions[subject > 127] = 2
        outlines += cv2.findContours(subject, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    first = _hatch_mask(h, w, rng.uniform(0.3, 1.2), spacing)
    cross = _hatch_mask(h, w, rng.uniform(1.9, 2.8), spacing)
    sky = _hatch_mask(h, w, 0.0, spacing * 2)
    img[((regions == 1) | (regions == 2)) & (first > 0)] = ink
    img[(regions == 2) & (cross > 0)] = ink
    img[(regions == 3) & (sky > 0)] = ink
    cv2.polylines(img, outlines, True, ink, _px(img, 0.005), _AA)
    cv2.rectangle(img, _pt(img, m, m), _pt(img, 1 - m, 1 - m), ink, _px(img, 0.004))
    _soften(img, 0.002)
    _finish(img, grain, 3.0)


def _draw_generic(img: np.ndarray, rng: np.random.Generator, grain: np.random.Generator) -> None:
    """Render an anonymous object: a shaded random silhouette on a neutral background."""
    _studio_background(img, rng)
    cy = rng.uniform(0.4, 0.6)
    size = rng.uniform(0.2, 0.35)
    _drop_shadow(img, rng, 0.5, cy + size * 0.9, size * 0.9)
    mask = _blob_mask(img, rng, rng.uniform(0.4, 0.6), cy, size)
    colour = _jitter(rng, _pick(rng, ((60, 80, 110), (120, 130, 140), (40, 60, 80), (150, 170, 180))), 15)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), _px(img, 0.04))
    layer = np.asarray(colour, np.float32) * (0.4 + 0.7 * soft)[..., None]
    _paste(img, mask, layer)
    _finish(img, grain, 3.0)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_Renderer = Callable[[np.ndarray, np.random.Generator, np.random.Generator], None]
_RENDERERS: dict[str, _Renderer] = {
    "india": _draw_india,
    "america": _draw_america,
    "china": _draw_china,
    "japan": _draw_japan,
    "european": _draw_european,
    "ceramic": _draw_ceramic,
    "metalwork": _draw_metalwork,
    "textile": _draw_textile,
    "sculpture": _draw_sculpture,
    "photograph": _draw_photograph,
    "print": _draw_print,
    "generic": _draw_generic,
}

STYLES: tuple[str, ...] = tuple(_RENDERERS)
"""Every style name :func:`render_artwork` accepts."""


def _canvas_size(width: int, height: int) -> tuple[int, int]:
    """Return the internal (width, height): longest side fixed, aspect ratio kept."""
    scale = _CANVAS_SIDE / max(width, height)
    return max(_MIN_SIDE, round(width * scale)), max(_MIN_SIDE, round(height * scale))


def _generators(style: str, seed: int, size: tuple[int, int]):
    """Return (layout, grain) generators: layout depends on (style, seed) only, grain on size too.

    Keeping the layout stream independent of the canvas size means every random choice of
    composition is identical whatever size is asked for; CRC32 gives a stable style code.
    """
    code = zlib.crc32(style.encode())
    key = operator.index(seed) % (1 << 64)
    return np.random.default_rng([code, key]), np.random.default_rng([code, key, *size])


def render_artwork(style: str, seed: int, width: int, height: int) -> np.ndarray:
    """Draw a synthetic picture of an object of ``style``.

    The composition (everything chosen at random) depends only on ``style`` and ``seed``; the
    picture is drawn at a fixed internal resolution and resampled, so sizes of one aspect ratio
    show the same picture.

    Args:
        style: One of :data:`STYLES`.
        seed: Any integer (typically the object ID); seeds equal modulo 2**64 give one picture.
        width: Output width in pixels, at least 8.
        height: Output height in pixels, at least 8.

    Returns:
        An ``(height, width, 3)`` ``uint8`` BGR array, deterministic in
        ``(style, seed, width, height)``.

    Raises:
        ValueError: If ``style`` is not in :data:`STYLES`, or ``width`` or ``height`` is below 8.
        TypeError: If ``seed``, ``width`` or ``height`` is not an integer.

    Example:
        >>> img = render_artwork("japan", 45434, 640, 480)
        >>> img.shape, img.dtype
        ((480, 640, 3), dtype('uint8'))
        >>> ok, jpeg = cv2.imencode(".jpg", img)
    """
    renderer = _RENDERERS.get(style)
    if renderer is None:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    width, height = operator.index(width), operator.index(height)
    if width < _MIN_SIDE or height < _MIN_SIDE:
        raise ValueError(f"width and height must be at least {_MIN_SIDE}, got {width}x{height}")
    size = _canvas_size(width, height)
    layout, grain = _generators(style, seed, size)
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    renderer(canvas, layout, grain)
    if size == (width, height):
        return canvas
    shrink = width < size[0] or height < size[1]
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
