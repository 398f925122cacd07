"""TrivialAugment Wide and RandAugment (urrlkit/augment/autoaugment.py, autoaugment_ops.py) against torchvision
(pytorch/vision torchvision/transforms/autoaugment.py ``_apply_op`` and transforms.functional on uint8 tensors).

Op level: every op at several magnitude bins and both signs equals torchvision's functional op on the same uint8
image EXACTLY — no tolerance, NEAREST and BILINEAR, with and without fill: the geometric ops use torchvision's own
matrices (float64, from the same formula) and sampling grid, the colour ops the same float32 arithmetic and
truncating casts. Real images: the bundled CIFAR-10 sample (32 px) and, when /work/shared/data holds it,
Tiny-ImageNet validation photos (64 px, and a 48×64 crop so that width and height differ).
Family level: the drawn ops applied by the batched family equal torchvision's ops applied one image at a time.
Draws: op, bin and sign frequencies within 5 binomial standard errors and a chi-square bound, with fixed seeds.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import InterpolationMode, RandAugment, TrivialAugmentWide
from torchvision.transforms import functional as F

from urrlkit.augment import autoaugment_ops as ops
from urrlkit.augment import build_family, build_sampler
from urrlkit.augment.autoaugment import AutoAugmentFamily, OpDraw
from urrlkit.augment.workers import AugmentingCollate
from urrlkit.config import FamilySpec, load, validate_dict
from urrlkit.data import DataRequest, build
from urrlkit.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2]
TINY = Path("/work/shared/data/tiny-imagenet-200/val/images")
N = 16
BINS = 31


@pytest.fixture(scope="module")
def cifar() -> torch.Tensor:
    return build("cifar10-sample", DataRequest(None, "train", 32)).images[:N]


def tiny_images() -> torch.Tensor:
    if not TINY.is_dir():
        pytest.skip("Tiny-ImageNet not under /work/shared/data")
    files = [TINY / f"val_{i}.JPEG" for i in range(N)]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def image_set(name: str, cifar: torch.Tensor) -> torch.Tensor:
    if name == "cifar32":
        return cifar
    tiny = tiny_images()
    return tiny if name == "tiny64" else tiny[:, :, 8:56, :].contiguous()  # 48 × 64: height ≠ width


def tv_op(img: torch.Tensor, name: str, magnitude: float, interpolation: str = "nearest",
          fill: float | None = None) -> torch.Tensor:
    """torchvision ``_apply_op`` spelled out with the public functional ops, on a uint8 (3, H, W) tensor."""
    mode = InterpolationMode.NEAREST if interpolation == "nearest" else InterpolationMode.BILINEAR
    fl = None if fill is None else [fill] * 3
    shear = math.degrees(math.atan(magnitude))
    geometric = {
        "ShearX": lambda: F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0],
                                   interpolation=mode, fill=fl, center=[0, 0]),
        "ShearY": lambda: F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, shear],
                                   interpolation=mode, fill=fl, center=[0, 0]),
        "TranslateX": lambda: F.affine(img, angle=0.0, translate=[int(magnitude), 0], scale=1.0,
                                       interpolation=mode, shear=[0.0, 0.0], fill=fl),
        "TranslateY": lambda: F.affine(img, angle=0.0, translate=[0, int(magnitude)], scale=1.0,
                                       interpolation=mode, shear=[0.0, 0.0], fill=fl),
        "Rotate": lambda: F.rotate(img, magnitude, interpolation=mode, fill=fl),
    }
    if name in geometric:
        return geometric[name]()
    return {
        "Identity": lambda: img,
        "Brightness": lambda: F.adjust_brightness(img, 1.0 + magnitude),
        "Color": lambda: F.adjust_saturation(img, 1.0 + magnitude),
        "Contrast": lambda: F.adjust_contrast(img, 1.0 + magnitude),
        "Sharpness": lambda: F.adjust_sharpness(img, 1.0 + magnitude),
        "Posterize": lambda: F.posterize(img, int(magnitude)),
        "Solarize": lambda: F.solarize(img, magnitude),
        "AutoContrast": lambda: F.autocontrast(img),
        "Equalize": lambda: F.equalize(img),
    }[name]()


def space_for(kind: str, h: int, w: int) -> ops.OpSpace:
    return ops.trivial_augment_wide_space(BINS) if kind == "ta" else ops.rand_augment_space(BINS, h, w)


def signed_magnitude(space: ops.OpSpace, k: int, b: int, negated: bool) -> float:
    bins = space.magnitudes[k]
    m = 0.0 if bins is None else bins[b]
    return -m if space.signed[k] and negated else m


# ------------------------------------------------------------------------------------------- op level


@pytest.mark.parametrize("kind", ["ta", "ra"])
def test_op_spaces_are_torchvision_s(kind: str) -> None:
    """Magnitude bins and signedness equal torchvision's ``_augmentation_space`` (same order of ops)."""
    h, w = 48, 64
    tv = TrivialAugmentWide()._augmentation_space(BINS) if kind == "ta" else \
        RandAugment()._augmentation_space(BINS, (h, w))
    assert tuple(tv) == ops.OP_NAMES
    ours = space_for(kind, h, w)
    for k, (name, (mags, signed)) in enumerate(tv.items()):
        assert ours.signed[k] == signed, name
        expect = None if mags.ndim == 0 else tuple(float(v) for v in mags.tolist())
        assert ours.magnitudes[k] == expect, name


@pytest.mark.parametrize("images", ["cifar32", "tiny64", "nonsquare"])
@pytest.mark.parametrize("kind", ["ta", "ra"])
def test_every_op_equals_torchvision_exactly(cifar: torch.Tensor, images: str, kind: str) -> None:
    x = image_set(images, cifar)
    h, w = x.shape[-2:]
    space = space_for(kind, h, w)
    tables = ops.op_tables(space, BINS, h, w, torch.device("cpu"))
    checked = 0
    for k, name in enumerate(ops.OP_NAMES):
        for b in (0, 1, 9, 17, 30):
            for negated in (False, True):
                j = (k * BINS + b) * 2 + negated
                ours = ops.apply_op(name, x.float(), tables.magnitude[j].expand(N), tables.theta[j].expand(N, 2, 3))
                m = signed_magnitude(space, k, b, negated)
                assert tables.magnitude[j].item() == m
                ref = torch.stack([tv_op(im, name, m) for im in x])
                assert torch.equal(ours, ref.float()), (name, b, negated)
                checked += 1
    assert checked == 14 * 5 * 2


@pytest.mark.parametrize(("interpolation", "fill"), [("nearest", 128.0), ("bilinear", None), ("bilinear", 77.0)])
def test_geometric_ops_with_interpolation_and_fill(cifar: torch.Tensor, interpolation: str,
                                                   fill: float | None) -> None:
    """torchvision's fill semantics: NEAREST sets pixels whose resampled mask is < 0.5, BILINEAR blends by the
    mask; fill=None is plain zero padding (BILINEAR then differs from fill=0 along the edges)."""
    x = cifar
    space = ops.trivial_augment_wide_space(BINS)
    tables = ops.op_tables(space, BINS, 32, 32, torch.device("cpu"))
    for name in ops.GEOMETRIC:
        k = ops.OP_NAMES.index(name)
        for b in (3, 12, 30):
            for negated in (False, True):
                j = (k * BINS + b) * 2 + negated
                ours = ops.affine(x.float(), tables.theta[j].expand(N, 2, 3), interpolation, fill)
                ref = torch.stack([tv_op(im, name, signed_magnitude(space, k, b, negated), interpolation, fill)
                                   for im in x])
                assert torch.equal(ours, ref.float()), (name, b, negated)


def test_colour_edge_cases_match_torchvision() -> None:
    """Flat channels (autocontrast and equalize leave them), a 2×2 image (sharpness returns it), extreme bins."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)
    x[0] = 7
    x[1, 0] = 200
    x[2, :, :, :8] = 255
    for name, op in [("AutoContrast", ops.autocontrast), ("Equalize", ops.equalize_op)]:
        assert torch.equal(op(x.float()), torch.stack([tv_op(im, name, 0.0) for im in x]).float())
    tiny = x[:, :, :2, :2]
    assert torch.equal(ops.sharpness(tiny.float(), torch.full((4,), 0.5)), tiny.float())
    for m in (-0.99, 0.99):
        ours = ops.sharpness(x.float(), torch.full((4,), m, dtype=torch.float32))
        m32 = float(torch.tensor(m, dtype=torch.float32))
        assert torch.equal(ours, torch.stack([tv_op(im, "Sharpness", m32) for im in x]).float())


# --------------------------------------------------------------------------------------- family level


def reference_chain(img: torch.Tensor, fam: AutoAugmentFamily, draw: OpDraw, i: int) -> torch.Tensor:
    """torchvision's ops applied to one image in the drawn order, with the drawn magnitudes and signs."""
    h, w = img.shape[-2:]
    space = fam.op_space(h, w)
    for step in range(draw.op.shape[0]):
        k = int(draw.op[step, i])
        m = signed_magnitude(space, k, int(draw.bin[step, i]), bool(draw.negated[step, i]))
        img = tv_op(img, ops.OP_NAMES[k], m, fam.interpolation, fam.fill)
    return img


@pytest.mark.parametrize(("name", "params"), [
    ("trivialaugment", {}), ("trivialaugment", {"interpolation": "bilinear", "fill": 128}),
    ("randaugment", {}), ("randaugment", {"num_ops": 3, "magnitude": 30}),
    ("randaugment", {"num_ops": 1, "magnitude": 0, "num_magnitude_bins": 5}),
])
def test_family_applies_its_draws_exactly_as_torchvision(cifar: torch.Tensor, name: str, params: dict) -> None:
    """A mixed batch (every image its own ops) equals torchvision per image — RandAugment applies exactly
    num_ops ops, in the order drawn."""
    fam = build_family(name, 32, **params)
    assert isinstance(fam, AutoAugmentFamily)
    x = build("cifar10-sample", DataRequest(None, "train", 32)).images[:64]
    g = torch.Generator().manual_seed(1)
    draw = fam.sample_params(x.shape[0], g)
    assert draw.op.shape == (fam.steps, 64)
    out = fam.apply(x.float(), draw)
    ref = torch.stack([reference_chain(im, fam, draw, i) for i, im in enumerate(x)])
    assert torch.equal(out, ref.float())


def test_randaugment_with_zero_ops_is_the_identity(cifar: torch.Tensor) -> None:
    fam = build_family("randaugment", 32, num_ops=0, crop="none", flip=False)
    x = cifar.float() / 255
    assert torch.equal(fam(x, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment"])
def test_views_are_on_the_8_bit_grid_and_seeded(name: str) -> None:
    fam = build_family(name, 32)
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = fam(x, torch.Generator().manual_seed(5))
    b = fam(x, torch.Generator().manual_seed(5))
    assert a.shape == (40, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (a * 255 - (a * 255).round()).abs().max() < 1e-4
    assert not torch.equal(a, fam(x, torch.Generator().manual_seed(6)))


@pytest.mark.parametrize(("size", "crop", "kind"), [(32, "auto", "pad"), (96, "auto", "rrc"), (32, "rrc", "rrc"),
                                                    (32, "none", "center"), (64, "pad", "pad")])
def test_crops(size: int, crop: str, kind: str) -> None:
    fam = build_family("trivialaugment", size, crop=crop, scale_min=0.25)
    assert fam.crop_spec.kind == kind and fam.crop_spec.flip
    assert kind != "rrc" or fam.crop_spec.scale == (0.25, 1.0)
    out = fam(torch.rand(6, 3, size + 8, size + 8), torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, size, size)


# -------------------------------------------------------------------------------------------- draws

DRAWS = 20_000


def assert_rate(observed: torch.Tensor, p: float) -> None:
    n = observed.numel()
    rate = observed.float().mean().item()
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n), f"rate {rate:.4f} vs {p} (n={n})"


def assert_uniform(values: torch.Tensor, k: int) -> None:
    """Each of k values at 1/k within 5 standard errors, and Pearson's chi-square below the 0.9999 quantile
    of χ²(k − 1) (Wilson–Hilferty approximation; 43.8 for k = 14, 70.7 for k = 31)."""
    counts = torch.bincount(values.reshape(-1), minlength=k).double()
    assert counts.numel() == k
    for v in range(k):
        assert_rate(values == v, 1 / k)
    expected = values.numel() / k
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    df, z = k - 1, 3.719  # z of 0.9999
    bound = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    assert chi2 < bound, (chi2, bound)


def test_trivialaugment_draws() -> None:
    fam = build_family("trivialaugment", 32)
    d = fam.sample_params(DRAWS, torch.Generator().manual_seed(0))
    assert d.op.shape == d.bin.shape == d.negated.shape == (1, DRAWS)
    assert_uniform(d.op, 14)
    assert_uniform(d.bin, 31)
    assert_rate(d.negated, 0.5)
    # independent of each other: the bins of one op are uniform, the sign of a signed op is a fair coin
    rotate = d.op == ops.OP_NAMES.index("Rotate")
    assert_uniform(d.bin[rotate], 31)
    assert_rate(d.negated[rotate], 0.5)


def test_randaugment_draws() -> None:
    fam = build_family("randaugment", 32, num_ops=3, magnitude=7)
    d = fam.sample_params(DRAWS, torch.Generator().manual_seed(0))
    assert d.op.shape == (3, DRAWS) and bool((d.bin == 7).all())
    for step in range(3):
        assert_uniform(d.op[step], 14)
        assert_rate(d.negated[step], 0.5)
    # ops of one image drawn independently, with replacement: the same op twice w.p. 1/14
    assert_rate(d.op[0] == d.op[1], 1 / 14)


def test_signed_magnitudes_follow_the_draw(cifar: torch.Tensor) -> None:
    """The table turns (op, bin, negated) into torchvision's signed magnitude; unsigned ops ignore the sign."""
    fam = build_family("trivialaugment", 32)
    t, _ = fam.tables(32, 32, torch.device("cpu"))
    rot, sol = ops.OP_NAMES.index("Rotate"), ops.OP_NAMES.index("Solarize")
    assert t.magnitude[(rot * BINS + 30) * 2 + 1].item() == -135.0
    assert t.magnitude[(rot * BINS + 30) * 2].item() == 135.0
    assert t.magnitude[(sol * BINS + 2) * 2 + 1].item() == t.magnitude[(sol * BINS + 2) * 2].item() == 238.0


# ----------------------------------------------------------------------------------- sampler and recipes


@pytest.mark.parametrize("robust", ["trivialaugment", "randaugment"])
def test_family_in_eq2_weighted_list(robust: str) -> None:
    """URRL's sampler over [moco_v2, robust] (paper Eq. 2 with the robust family swapped) makes views from
    both, on stored images and through the crops-on-originals path (crop_spec + photometric)."""
    specs = [FamilySpec(name="moco_v2", weight=0.5), FamilySpec(name=robust, weight=0.5)]
    sampler = build_sampler(specs, image_size=32, views=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 3, 36, 36), dtype=torch.uint8, generator=g)
    views, fam = sampler(x, g)
    assert len(views) == 2 and views[0].shape == (200, 3, 32, 32) and fam.shape == (2, 200)
    assert 0.4 < (fam == 1).float().mean().item() < 0.6
    robust_views = torch.stack(views)[fam == 1]
    assert (robust_views * 255 - (robust_views * 255).round()).abs().max() < 1e-4  # 8-bit grid: our ops ran
    assert [s.kind for s in sampler.crop_specs()] == ["rrc", "pad"]
    out = sampler.photometric(x[:, :, :32, :32].repeat(2, 1, 1, 1), fam, g)
    assert len(out) == 2 and out[1].shape == (200, 3, 32, 32)


def test_runs_in_a_dataloader_worker_and_pickles(cifar: torch.Tensor) -> None:
    """As ``urrl pretrain`` feeds a CPU run: the sampler travels pickled to a DataLoader worker (tables not yet
    built there) and makes the same views as in the main process; a pickled family with built tables too."""
    sampler = build_sampler([FamilySpec(name="trivialaugment"), FamilySpec(name="randaugment")], image_size=32)
    items = [(cifar[i], i) for i in range(N)]
    collate = AugmentingCollate(sampler, seed=0)
    there = next(iter(DataLoader(items, batch_size=8, num_workers=1, collate_fn=collate)))
    here = collate(items[:8])  # builds the tables here
    assert all(torch.equal(a, b) for a, b in zip(here[0], there[0], strict=True))
    assert torch.equal(here[1], there[1])
    again = AugmentingCollate(pickle.loads(pickle.dumps(sampler)), 0)(items[:8])
    assert all(torch.equal(a, b) for a, b in zip(here[0], again[0], strict=True))


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment"])
def test_shipped_recipe_validates(name: str) -> None:
    r = load(ROOT / "recipes" / "families" / f"{name}.toml")
    names = [f.name for f in r.pretext.family_weights()]
    assert names == [name, "moco_v2"]
    assert [f.weight for f in r.pretext.family_weights()] == [0.5, 0.5]


@pytest.mark.parametrize(("name", "params", "field", "says"), [
    ("randaugment", {"magnitude": 31}, "magnitude", "must be < num_magnitude_bins = 31"),
    ("randaugment", {"num_ops": -1}, "num_ops", "≥ 0"),
    ("randaugment", {"magnitude": 5, "num_magnitude_bins": 5}, "magnitude", "< num_magnitude_bins = 5"),
    ("trivialaugment", {"num_magnitude_bins": 1}, "num_magnitude_bins", "≥ 2"),
    ("trivialaugment", {"interpolation": "bicubic"}, "interpolation", "nearest, bilinear"),
    ("trivialaugment", {"fill": 300}, "fill", "[0, 255]"),
    ("randaugment", {"crop": "centre"}, "crop", "auto, pad, rrc, none"),
    ("trivialaugment", {"scale_min": 0}, "scale_min", "(0, 1]"),
])
def test_bad_values_are_one_line_recipe_errors(name: str, params: dict, field: str, says: str) -> None:
    with pytest.raises(RecipeError) as err:
        validate_dict({"pretext": {"families": [{"name": name, "params": params}]}})
    msg = str(err.value)
    assert f"pretext.families[0].params.{field}" in msg and says in msg and "\n" not in msg


# ----------------------------------------------------------------------------------------------- GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["trivialaugment", "randaugment"])
def test_on_cuda_equals_torchvision_on_cuda(cifar: torch.Tensor, name: str) -> None:
    fam = build_family(name, 32)
    x = cifar.cuda()
    draw = fam.sample_params(N, torch.Generator(device="cuda").manual_seed(0))
    out = fam.apply(x.float(), draw)
    ref = torch.stack([reference_chain(im, fam, draw, i) for i, im in enumerate(x)])
    assert out.device.type == "cuda" and torch.equal(out, ref.float())
