"""Op-by-op equivalence: for fixed parameters each batched, per-sample op equals a per-image reference
(PIL for AugMix's ops, torchvision functional for MoCo v2's) on real images from the bundled CIFAR-10 sample.

Tolerances (stated per test): AugMix ops on the 8-bit grid are exact except the bilinear geometric ops and
chains, where float32 vs PIL's double arithmetic may move a pixel by one grey level; MoCo ops agree to
float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from torchvision.transforms.v2 import functional as TF

from urrlkit.augment import augmix, augmix_ops, color, geometry
from urrlkit.augment.families import MocoV2
from urrlkit.data import DataRequest, build

N = 48


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return build("cifar10-sample", DataRequest(None, "train", 32)).images[:N]


def to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def from_pil(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()


def pil_op(name: str, im: Image.Image, level: float, sign: float) -> Image.Image:
    """The google-research/augmix augmentations.py ops, verbatim in meaning."""
    size = im.size[0]
    f = level * 1.8 / 10 + 0.1
    bil = Image.BILINEAR
    aff = Image.AFFINE
    return {
        "autocontrast": lambda: ImageOps.autocontrast(im),
        "equalize": lambda: ImageOps.equalize(im),
        "posterize": lambda: ImageOps.posterize(im, 4 - int(level * 4 / 10)),
        "solarize": lambda: ImageOps.solarize(im, 256 - int(level * 256 / 10)),
        "rotate": lambda: im.rotate(int(level * 30 / 10) * sign, resample=bil),
        "shear_x": lambda: im.transform(im.size, aff, (1, level * 0.3 / 10 * sign, 0, 0, 1, 0), resample=bil),
        "shear_y": lambda: im.transform(im.size, aff, (1, 0, 0, level * 0.3 / 10 * sign, 1, 0), resample=bil),
        "translate_x": lambda: im.transform(im.size, aff, (1, 0, int(level * size / 3 / 10) * sign, 0, 1, 0),
                                            resample=bil),
        "translate_y": lambda: im.transform(im.size, aff, (1, 0, 0, 0, 1, int(level * size / 3 / 10) * sign),
                                            resample=bil),
        "color": lambda: ImageEnhance.Color(im).enhance(f),
        "contrast": lambda: ImageEnhance.Contrast(im).enhance(f),
        "brightness": lambda: ImageEnhance.Brightness(im).enhance(f),
        "sharpness": lambda: ImageEnhance.Sharpness(im).enhance(f),
    }[name]()


def test_equalize_edge_cases_match_pil() -> None:
    """Flat channels, two-valued channels and channels whose top value covers all but < 255 pixels (PIL's
    step = 0: left unchanged) — the branches random photos rarely reach."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 32, 32, generator=g) * 256).floor()
    x[0] = 7
    x[1, 0] = 200
    x[2, 1, :30] = 255
    x[3, 2] = (torch.rand(32, 32, generator=g) < 0.5).float() * 255
    x[4, :, :31] = 255  # 32 non-max pixels per channel: step 0
    x[5, :, :, :24] = 0
    ours = augmix_ops.equalize(x, torch.ones(6), torch.ones(6), g)
    ref = torch.stack([from_pil(ImageOps.equalize(to_pil(im.to(torch.uint8)))) for im in x])
    assert torch.equal(ours, ref)
    assert torch.equal(ours[4], x[4]) and torch.equal(ours[0], x[0])
    # The GPU's histogram path (scatter_add) counts exactly as the CPU's (bincount).
    flat = augmix_ops.lut_indices(x)
    assert torch.equal(augmix_ops.channel_histograms(flat, 18, scatter=True),
                       augmix_ops.channel_histograms(flat, 18, scatter=False))


GEOMETRIC = {"rotate", "shear_x", "shear_y"}


@pytest.mark.parametrize("name", list(augmix_ops.AUGMENTATIONS_ALL))
@pytest.mark.parametrize("severity", [3.0, 10.0])
def test_augmix_op_matches_pil(images: torch.Tensor, name: str, severity: float) -> None:
    g = torch.Generator().manual_seed(1)
    level = torch.rand(N, generator=g) * (severity - 0.1) + 0.1
    sign = torch.where(torch.rand(N, generator=g) < 0.5, 1.0, -1.0)
    ours = augmix_ops.AUGMENTATIONS_ALL[name](images.float(), level, sign, g)
    ref = torch.stack([from_pil(pil_op(name, to_pil(im), float(lv), float(s)))
                       for im, lv, s in zip(images, level, sign, strict=True)])
    diff = (ours - ref).abs()
    if name in GEOMETRIC:
        # Bilinear weights in float32 vs PIL's double: a pixel may truncate one level apart.
        assert diff.max() <= 1
        assert (diff > 0).float().mean() < 0.005
    else:
        assert torch.equal(ours, ref), f"{name}: max diff {diff.max()}"
    # The op must actually change something for most images (guards against a silent identity).
    changed = (ours != images.float()).flatten(1).any(1).float().mean()
    assert changed > (0.3 if name in {"posterize", "solarize"} and severity == 3.0 else 0.5)


def test_augmix_op_lists() -> None:
    assert list(augmix_ops.AUGMENTATIONS) == ["autocontrast", "equalize", "posterize", "rotate", "solarize",
                                              "shear_x", "shear_y", "translate_x", "translate_y"]
    assert len(augmix_ops.AUGMENTATIONS_ALL) == 13
    assert set(augmix_ops.AUGMENTATIONS_ALL) - set(augmix_ops.AUGMENTATIONS) == {
        "color", "contrast", "brightness", "sharpness"}


def reference_augmix(img: torch.Tensor, p: augmix.AugMixParams, i: int, n: int,
                     names: list[str]) -> torch.Tensor:
    """augment_and_mix of the reference for image i, replaying the drawn ops/levels/signs with PIL."""
    x = img.float() / 255
    mix = torch.zeros_like(x)
    for c in range(p.width):
        k = c * n + i
        im = to_pil(img)
        for step in range(int(p.depth[k])):
            im = pil_op(names[int(p.op[step, k])], im, float(p.level[step, k]), float(p.sign[step, k]))
        mix += p.weights[i, c] * from_pil(im) / 255
    return (1 - p.m[i]) * x + p.m[i] * mix


def test_augmix_chains_and_mixing_match_reference(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(2)
    ops = list(augmix_ops.AUGMENTATIONS_ALL.values())
    names = list(augmix_ops.AUGMENTATIONS_ALL)
    p = augmix.sample_params(N, len(ops), g, severity=3.0)
    ours = augmix.mix(images.float() / 255, augmix.run_chains(images.float(), p, ops, g), p)
    ref = torch.stack([reference_augmix(images[i], p, i, N, names) for i in range(N)])
    diff = (ours - ref).abs()
    # One-level differences from the geometric ops can be amplified by a later equalize/autocontrast LUT;
    # they stay rare and small.
    assert diff.mean() < 0.2 / 255
    assert (diff > 1.01 / 255).float().mean() < 0.005
    assert (ours - images.float() / 255).abs().mean() > 5 / 255  # AugMix really changed the images


# ------------------------------------------------------------------------------------------ MoCo ops


@pytest.fixture(scope="module")
def floats(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


@pytest.mark.parametrize(("ours", "theirs", "lo", "hi"), [
    (color.brightness, TF.adjust_brightness, 0.6, 1.4),
    (color.contrast, TF.adjust_contrast, 0.6, 1.4),
    (color.saturation, TF.adjust_saturation, 0.6, 1.4),
    (color.hue, TF.adjust_hue, -0.1, 0.1),
])
def test_jitter_ops_match_torchvision(floats: torch.Tensor, ours, theirs, lo: float, hi: float) -> None:
    f = torch.linspace(lo, hi, N)
    out = ours(floats.clone(), f)
    ref = torch.stack([theirs(im, float(v)) for im, v in zip(floats, f, strict=True)])
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


def test_color_jitter_order_per_sample(floats: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(3)
    factors, order = color.jitter_params(N, g)
    assert len({tuple(o.tolist()) for o in order}) > 10  # orders differ between samples
    out = color.apply_jitter(floats, factors, order)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(N):
        ref = floats[i]
        for k in order[i].tolist():
            ref = fns[k](ref, float(factors[i, k]))
        torch.testing.assert_close(out[i], ref, atol=5e-5, rtol=0)


def test_grayscale_and_blur_match_torchvision(floats: torch.Tensor) -> None:
    torch.testing.assert_close(color.grayscale(floats), TF.rgb_to_grayscale(floats, num_output_channels=3))
    sigma = torch.linspace(0.1, 2.0, N)
    k = color.blur_kernel_size(2.0)
    out = color.gaussian_blur(floats, sigma, k)
    ref = torch.stack([TF.gaussian_blur(im, [k, k], [float(s), float(s)]) for im, s in zip(floats, sigma,
                                                                                              strict=True)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_resized_crop_matches_torchvision(floats: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(4)
    top, left, h, w = geometry.rrc_params(N, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3), g)
    flip = torch.rand(N, generator=g) < 0.5
    box = torch.stack([left, top, w, h], dim=1)
    out = geometry.warp(floats, geometry.crop_matrix(top, left, h, w, 32, flip), (32, 32), edges="border",
                        box=box)
    for i in range(N):
        ref = TF.resized_crop(floats[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [32, 32],
                              antialias=True)  # upsampling: antialias has no effect
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_resized_crop_downscale_matches_plain_bilinear() -> None:
    # From 256-px storage to 224: equal to torchvision without antialias (documented deviation).
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 256, 256, generator=g)
    top, left = torch.tensor([0, 3, 10, 0]), torch.tensor([0, 6, 1, 0])
    h, w = torch.tensor([256, 240, 230, 250]), torch.tensor([256, 250, 240, 256])
    box = torch.stack([left, top, w, h], dim=1)
    out = geometry.warp(x, geometry.crop_matrix(top, left, h, w, 224), (224, 224), edges="border", box=box)
    for i in range(4):
        ref = TF.resized_crop(x[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [224, 224],
                              antialias=False)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_pad_crop_is_exact_shift(images: torch.Tensor) -> None:
    x = images.float()
    out = geometry.pad_crop(x, 32, torch.Generator().manual_seed(6), padding=4, flip=False)
    padded = TF.pad(x, [4, 4, 4, 4], fill=0)
    for i in range(N):  # every output must be one of the 81 integer windows of the padded image
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
        hit = (windows == out[i][:, None, None]).flatten(3).all(3).all(0)
        assert hit.any(), f"image {i}: not an exact padded crop"


def test_moco_view_matches_torchvision_composition(floats: torch.Tensor) -> None:
    fam = MocoV2(32)
    g = torch.Generator().manual_seed(7)
    p = fam.sample_params(N, 32, 32, g)
    out = fam.apply(floats, p)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(N):
        ref = TF.resized_crop(floats[i], int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]),
                              [32, 32], antialias=True)
        if p.jitter[i]:
            for k in p.order[i].tolist():
                ref = fns[k](ref, float(p.factors[i, k]))
        if p.gray[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        if p.blur[i]:
            s = float(p.sigma[i])
            ref = TF.gaussian_blur(ref, [fam.kernel, fam.kernel], [s, s])
        if p.flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(out[i], ref.clamp(0, 1), atol=1e-4, rtol=0)


def test_pil_gaussian_blur_is_close(floats: torch.Tensor) -> None:
    # MoCo's reference blurs with PIL's box-filter approximation of a Gaussian; ours is the exact kernel.
    sigma = torch.full((N,), 1.0)
    out = color.gaussian_blur(floats, sigma, color.blur_kernel_size(2.0)) * 255
    ref = torch.stack([from_pil(to_pil((im * 255).round().byte()).filter(ImageFilter.GaussianBlur(1.0)))
                       for im in floats])
    assert (out - ref)[..., 3:-3, 3:-3].abs().mean() < 1.5


# ------------------------------------------------------------------------------ fast paths vs warp


def test_resized_crop_fast_path_matches_dense_warp() -> None:
    # geometry.resized_crop builds the crop's sampling grid separably; it must equal the dense warp.
    g = torch.Generator().manual_seed(8)
    x = torch.rand(16, 3, 40, 40, generator=g)
    top, left, h, w = geometry.rrc_params(16, 40, 40, (0.08, 1.0), (3 / 4, 4 / 3), g)
    flip = torch.rand(16, generator=g) < 0.5
    box = torch.stack([left, top, w, h], dim=1)
    for size in (24, 32, 56):
        dense = geometry.warp(x, geometry.crop_matrix(top, left, h, w, size, flip), (size, size),
                              edges="border", box=box)
        fast = geometry.resized_crop(x, top, left, h, w, size, flip)
        torch.testing.assert_close(fast, dense, atol=1e-6, rtol=0)
    # the zero-padded integer crop: exact
    t, lf = torch.randint(-4, 5, (16,), generator=g), torch.randint(-4, 5, (16,), generator=g)
    side = torch.full((16,), 32)
    dense = geometry.warp(x, geometry.crop_matrix(t, lf, side, side, 32, flip), (32, 32))
    fast = geometry.resized_crop(x, t, lf, side, side, 32, flip, edges="zeros", clamp_to_box=False)
    assert torch.equal(fast, dense)
    shifted = geometry.shift_crop(x, t, lf, 32, flip)
    torch.testing.assert_close(shifted, dense, atol=1e-5, rtol=0)  # the dense warp leaks ~1e-6
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))  # the gather is the exact padded window
    for i in range(16):
        win = padded[i, :, 4 + t[i]:36 + t[i], 4 + lf[i]:36 + lf[i]]
        assert torch.equal(shifted[i], win.flip(-1) if flip[i] else win)


@pytest.mark.parametrize("name", ["translate_x", "translate_y"])
def test_translate_gather_matches_affine_warp(images: torch.Tensor, name: str) -> None:
    # The integer translations are gathers; they must equal the PIL-rule bilinear warp they replace.
    g = torch.Generator().manual_seed(9)
    level = torch.rand(N, generator=g) * 9.9 + 0.1
    sign = torch.where(torch.rand(N, generator=g) < 0.5, 1.0, -1.0)
    x = images.float()
    t = augmix_ops.int_parameter(level, 32 / 3) * sign
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    args = (one, zero, t, zero, one, zero) if name == "translate_x" else (one, zero, zero, zero, one, t)
    ref = augmix_ops._affine(x, *args)
    assert torch.equal(augmix_ops.AUGMENTATIONS_ALL[name](x, level, sign, g), ref)


def test_autocontrast_lut_matches_pixelwise_float64() -> None:
    # The LUT path equals PIL's float64 formula evaluated on every pixel, incl. flat channels.
    g = torch.Generator().manual_seed(10)
    x = torch.randint(0, 256, (8, 3, 16, 16), generator=g).float()
    x[0, 1] = 77.0  # a flat channel stays unchanged
    x[1] = x[1].clamp(40, 90)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = torch.where(hi <= lo, torch.ones_like(hi), hi - lo).double()
    scale = torch.full_like(span, 255.0) / span
    ref = torch.floor(x.double() * scale - lo.double() * scale).clamp_(0, 255).float()
    ref = torch.where(hi <= lo, x, ref)
    out = augmix_ops.autocontrast(x, torch.ones(8), torch.ones(8), g)
    assert torch.equal(out, ref)


def test_shift_rows_equals_a_gather_along_the_height() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 3, 7, 4, generator=g)
    offset = torch.tensor([-9, -2, 0, 3, 7])  # fully out, partly out, none, partly out, fully out
    src = torch.arange(7).view(1, 7) + offset.view(-1, 1)
    valid = ((src >= 0) & (src < 7)).view(5, 1, 7, 1)
    want = x.gather(2, src.clamp(0, 6).view(5, 1, 7, 1).expand_as(x)) * valid
    assert torch.equal(geometry.shift_rows(x, offset), want)
    assert (geometry.shift_rows(x, offset)[[0, 4]] == 0).all()


def test_blur_of_images_smaller_than_the_kernel_clips_the_kernel() -> None:
    # 8-px images cannot reflect-pad 6 pixels: the kernel shrinks to 7 taps, as torchvision needs it to.
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    sigma = torch.tensor([0.3, 1.0, 2.0])
    out = color.gaussian_blur(x, sigma, color.blur_kernel_size(2.0))
    ref = torch.stack([TF.gaussian_blur(im, [7, 7], [float(s), float(s)]) for im, s in zip(x, sigma, strict=True)])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert torch.allclose(color.gaussian_kernels(sigma, 7).sum(1), torch.ones(3))
