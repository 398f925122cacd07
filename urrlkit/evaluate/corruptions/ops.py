"""The 19 corruptions of Hendrycks & Dietterich (2019), batched in torch.

Every op takes a float batch `x` (N, 3, H, W) in [0, 1] (decoded from uint8, as the reference's PIL input),
the severity 1..5 and a `Rand` (seeded torch and numpy generators), and returns a float batch in [0, 1].
`urrlkit.evaluate.corruptions.corrupt` quantises the result the way the reference saves it (`np.uint8`,
i.e. truncation). Parameters come from `params.PARAMS` by size class. numpy/scipy are used only where the
reference's operation is inherently sequential (glass blur's pixel walk) or has no torch equivalent
(spatter's edge/distance maps); JPEG goes through torchvision's libjpeg bindings.

The ops live in `noise_blur`, `weather` and `digital`, their building blocks in `kernels`; this module
gathers them (and re-exports the building blocks for callers and tests).
"""

from __future__ import annotations

from urrlkit.evaluate.corruptions.digital import (
    brightness,
    contrast,
    elastic_transform,
    jpeg_compression,
    pixelate,
    saturate,
)
from urrlkit.evaluate.corruptions.kernels import (
    Rand,
    bilinear_sample,
    clipped_zoom,
    gaussian,
    hsv_to_rgb,
    motion_blur_batch,
    motion_kernel,
    pil_resize,
    rgb_to_hsv,
    zoom_matrix,
)
from urrlkit.evaluate.corruptions.noise_blur import (
    defocus_blur,
    disk_kernel,
    gaussian_blur,
    gaussian_noise,
    glass_blur,
    impulse_noise,
    motion_blur,
    shot_noise,
    speckle_noise,
    zoom_blur,
)
from urrlkit.evaluate.corruptions.weather import fog, frost, plasma_fractal, snow, spatter

__all__ = [
    "OPS",
    "Rand",
    "bilinear_sample",
    "clipped_zoom",
    "disk_kernel",
    "gaussian",
    "hsv_to_rgb",
    "motion_blur_batch",
    "motion_kernel",
    "pil_resize",
    "plasma_fractal",
    "rgb_to_hsv",
    "zoom_matrix",
]

OPS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
