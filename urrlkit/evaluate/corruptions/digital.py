"""Digital corruptions (contrast, brightness, saturate, JPEG, pixelate, elastic) of hendrycks/robustness
`make_*_c.py`, batched."""

from __future__ import annotations

import warnings
from typing import cast

import torch

from urrlkit.evaluate.corruptions.kernels import Rand, bilinear_sample, gaussian, hsv_to_rgb, pil_resize, rgb_to_hsv
from urrlkit.evaluate.corruptions.params import param

# ----------------------------------------------------------------------------------------------- digital


def contrast(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("contrast", severity, x.shape[-1])
    means = x.mean((2, 3), keepdim=True)
    return ((x - means) * c + means).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("brightness", severity, x.shape[-1])
    hsv = rgb_to_hsv(x.double())
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv).to(x.dtype).clamp(0, 1)


def saturate(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    a, b = param("saturate", severity, x.shape[-1])
    hsv = rgb_to_hsv(x.double())
    hsv[:, 1] = (hsv[:, 1] * a + b).clamp(0, 1)
    return hsv_to_rgb(hsv).to(x.dtype).clamp(0, 1)


def jpeg_compression(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """libjpeg through torchvision.io (batched lists), the same library and defaults (4:2:0) Pillow uses."""
    from torchvision.io import decode_jpeg, encode_jpeg

    q = param("jpeg_compression", severity, x.shape[-1])
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec
        # cast: both functions are annotated Tensor | list[Tensor] for either call form; a list in, a list out
        out = cast(list[torch.Tensor], decode_jpeg(encode_jpeg(list(u8), quality=q)))
    return torch.stack(out).to(x.dtype) / 255


def pixelate(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Pillow BOX down to int(size·c), BOX back up (both passes in Pillow's 8-bit arithmetic)."""
    c = param("pixelate", severity, x.shape[-1])
    h, w = x.shape[-2:]
    y = (x * 255).round()
    y = pil_resize(y, (int(h * c), int(w * c)), "box")
    y = pil_resize(y, (h, w), "box")
    return y / 255


def elastic_transform(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Random affine (cv2.warpAffine, bilinear, REFLECT_101) then a smooth random displacement field
    (scipy map_coordinates order 1, mode 'reflect'); α, σ and the affine range scale with the image size."""
    fa, fs, fc = param("elastic_transform", severity, x.shape[-1])
    n, _, h, w = x.shape
    size = h
    alpha, sigma, aff = fa * size, fs * size, fc * size
    center = torch.tensor([h // 2, w // 2], dtype=torch.float64)  # np.float32(shape) // 2
    sq = min(h, w) // 3
    pts1 = torch.stack(
        [center + sq, torch.stack([center[0] + sq, center[1] - sq]), center - sq]
    )  # (3, 2) (x, y)
    pts2 = pts1.unsqueeze(0) + rng.uniform(-aff, aff, (n, 3, 2)).double()
    # affine M with M·[p1; 1] = p2, then the inverse map dst → src (cv2 inverts M internally)
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64)], 1)  # (3, 3)
    mt = torch.linalg.solve(src.unsqueeze(0).expand(n, 3, 3), pts2)  # (n, 3, 2): [x y 1] @ mt = p2
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2, :] = mt.transpose(1, 2)
    full[:, 2, 2] = 1
    inv = torch.linalg.inv(full)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    pts = torch.stack([xx, yy, torch.ones_like(xx)], -1).view(1, h * w, 3)
    srcp = pts @ inv.transpose(1, 2)  # (n, hw, 3)
    sx = srcp[..., 0].view(n, h, w)
    sy = srcp[..., 1].view(n, h, w)
    warped = bilinear_sample(x, sy.to(x.dtype), sx.to(x.dtype), "mirror")

    def field() -> torch.Tensor:
        u = rng.uniform(-1, 1, (n, 1, h, w))
        return (gaussian(u, sigma, mode="reflect", truncate=3) * alpha)[:, 0]

    dx = field()
    dy = field()
    out = bilinear_sample(
        warped, yy.to(x.dtype).unsqueeze(0) + dy, xx.to(x.dtype).unsqueeze(0) + dx, "reflect"
    )
    return out.to(x.dtype).clamp(0, 1)
