"""The OpenCV operations of the reference's spatter (water) branch, in numpy/scipy, one 2-D uint8 map at a time.

hendrycks/robustness `make_*_c.py` spatter: Canny(50, 150) edges → L2 distance transform → truncate at 20 →
3×3 box blur → equalizeHist → filter2D with an emboss kernel → 3×3 box blur. OpenCV is not a urrlkit
dependency, so these follow its definitions (canny.cpp, histogram.cpp, box/filter2D with BORDER_REFLECT_101
and saturate_cast rounding), including the 5×5 chamfer distance transform of cv2.DIST_L2 (mask 5).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TAN_22_5 = 0.4142135623730951
TAN_67_5 = 2.414213562373095


def canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """cv2.Canny(img, low, high) (aperture 3, L1 gradient): bool edge map."""
    a = img.astype(np.float64)
    # cv2.Sobel with BORDER_REPLICATE, dx then dy
    gx = ndimage.correlate(a, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), mode="nearest")
    gy = ndimage.correlate(a, np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float), mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    p = np.pad(mag, 1)  # neighbours outside the image count as 0, as OpenCV's zeroed border rows
    h, w = mag.shape
    c = p[1:-1, 1:-1]
    left, right = p[1:-1, :-2], p[1:-1, 2:]
    up, down = p[:-2, 1:-1], p[2:, 1:-1]
    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay < ax * TAN_22_5
    vertical = ~horizontal & (ay > ax * TAN_67_5)
    diagonal = ~horizontal & ~vertical
    same_sign = (gx * gy) >= 0  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    # s = 1: compare (y-1, x-1) and (y+1, x+1); s = -1: (y-1, x+1) and (y+1, x-1)
    d1a, d1b = p[:-2, :-2], p[2:, 2:]
    d2a, d2b = p[:-2, 2:], p[2:, :-2]
    nms = (
        (horizontal & (c > left) & (c >= right))
        | (vertical & (c > up) & (c >= down))
        | (diagonal & same_sign & (c > d1a) & (c > d1b))
        | (diagonal & ~same_sign & (c > d2a) & (c > d2b))
    )
    weak = nms & (mag > low)
    strong = weak & (mag > high)
    labels, n = ndimage.label(weak, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros((h, w), bool)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


# cv2.distanceTransform(DIST_L2, 5): moves and costs of the 5×5 chamfer mask (a = 1, b = 1.4, c = 2.1969)
_CHAMFER = [
    (dy, dx, {1: 1.0, 2: 1.4, 5: 2.1969}[dy * dy + dx * dx])
    for dy in range(-2, 3)
    for dx in range(-2, 3)
    if dy * dy + dx * dx in (1, 2, 5)
]


def chamfer_distance(zero: np.ndarray, cap: float) -> np.ndarray:
    """min(distance to the nearest `zero` pixel under the 5×5 chamfer metric, cap) (float32 as OpenCV).
    Bellman-Ford relaxation: every move costs ≥ 1, so ceil(cap) rounds make all distances ≤ cap exact."""
    h, w = zero.shape
    big = np.float32(1e6)
    d = np.where(zero, np.float32(0), big).astype(np.float32)
    for _ in range(int(np.ceil(cap)) + 1):
        p = np.pad(d, 2, constant_values=big)
        new = d
        for dy, dx, cost in _CHAMFER:
            new = np.minimum(new, p[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] + np.float32(cost))
        if np.array_equal(new, d):
            break
        d = new
    return np.minimum(d, np.float32(cap))


def box3(img: np.ndarray) -> np.ndarray:
    """cv2.blur(img, (3, 3)) as float (BORDER_REFLECT_101)."""
    return ndimage.uniform_filter(img.astype(np.float64), 3, mode="mirror")


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """cv2.equalizeHist on uint8."""
    hist = np.bincount(img.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    total = img.size
    if hist[first] == total:
        return np.full_like(img, first)
    lut = np.round((np.cumsum(hist) - hist[first]) * (255.0 / (total - hist[first])))
    return np.clip(lut, 0, 255).astype(np.uint8)[img]


def water_mask(liquid: np.ndarray) -> np.ndarray:
    """The reference's water mask before normalisation: liquid_u8 · dist (float), from the thresholded liquid
    layer (float). `(liquid * 255).astype(np.uint8)` wraps modulo 256 above 1.0, as numpy does on x86."""
    lq = np.floor(liquid * 255).astype(np.int64) % 256
    lq = lq.astype(np.uint8)
    edges = canny(lq, 50, 150)
    dist = chamfer_distance(edges, 20)
    dist = box3(dist).astype(np.float32).astype(np.uint8)
    dist = equalize_hist(dist)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
    dist = np.clip(np.round(ndimage.correlate(dist.astype(np.float64), ker, mode="mirror")), 0, 255)
    dist = np.clip(np.round(box3(dist)), 0, 255)
    return lq.astype(np.float64) * dist
