"""PixMix (urrlkit/augment/pixmix.py) against andyzoujm/pixmix: the batched op equals a per-image loop written
from the reference ``pixmix`` on real images; k = 0 is the (augmented) original; the draws follow the reference
distributions; the family's defaults are the paper's; any image folder is a mixing set (the fractal mixing set,
urrlkit/augment/fractals.py: test_augment_fractals.py)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from urrlkit.augment import build_family, build_sampler, fractals, pixmix
from urrlkit.augment.augmix_ops import AUGMENTATIONS, AUGMENTATIONS_ALL
from urrlkit.augment.workers import AugmentingCollate
from urrlkit.cli import app
from urrlkit.config import FamilySpec, load
from urrlkit.data import DataRequest, build
from urrlkit.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
N = 20_000
OPS = list(AUGMENTATIONS.values())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Real images in [0, 1] on the 8-bit grid: CIFAR-10 from /work/shared/data when present, else the bundled
    sample."""
    shared = ROOT.parent / "shared" / "data" / "cifar10" / "train.npz"
    if shared.exists():
        x = torch.from_numpy(np.load(shared)["images"][:24]).permute(0, 3, 1, 2)
    else:
        x = build("cifar10-sample", DataRequest(None, "train", 32)).images[:24]
    return (x.float() / 255).contiguous()


@pytest.fixture(scope="module")
def mixing() -> torch.Tensor:
    return fractals.fractal_images(16, 36, seed=0)


def assert_rate(observed: torch.Tensor, p: float) -> None:
    n = observed.numel()
    rate = observed.float().mean().item()
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n), f"rate {rate:.4f} vs {p} (n={n})"


# ------------------------------------------------------------------------------ the reference's mixings


def ref_add(img1: np.ndarray, img2: np.ndarray, a: float, b: float) -> np.ndarray:
    """pixmix_utils.py add with (a, b) given."""
    img1, img2 = img1 * 2 - 1, img2 * 2 - 1
    out = a * img1 + b * img2
    return (out + 1) / 2


def ref_multiply(img1: np.ndarray, img2: np.ndarray, a: float, b: float) -> np.ndarray:
    """pixmix_utils.py multiply with (a, b) given."""
    img1, img2 = img1 * 2, img2 * 2
    out = (img1**a) * (img2.clip(1e-37) ** b)
    return out / 2


def test_mixings_equal_the_reference(images: torch.Tensor) -> None:
    a, b = pixmix.get_ab(12, 3.0, torch.Generator().manual_seed(0))
    x, y = images[:12], images[12:24]
    add, mul = pixmix.mix_add(x, y, a, b), pixmix.mix_multiply(x, y, a, b)
    for i in range(12):
        xi, yi = x[i].numpy(), y[i].numpy()
        np.testing.assert_allclose(add[i].numpy(), ref_add(xi, yi, a[i].item(), b[i].item()), atol=1e-6)
        np.testing.assert_allclose(mul[i].numpy(), ref_multiply(xi, yi, a[i].item(), b[i].item()), rtol=1e-6)


def per_image_pixmix(x01: torch.Tensor, p: pixmix.PixMixParams, ops: list, pics: torch.Tensor,
                     g: torch.Generator) -> torch.Tensor:
    """cifar.py ``pixmix`` for each image alone, with the drawn choices of p (one image, one op at a time)."""
    out = []
    size = x01.shape[-1]
    for i in range(x01.shape[0]):
        orig255 = (x01[i:i + 1] * 255).round()

        def augment_input(row: int, i: int = i, orig255: torch.Tensor = orig255) -> torch.Tensor:
            op = ops[int(p.op[row, i])]
            return op(orig255, p.level[row, i:i + 1], p.sign[row, i:i + 1], g) / 255

        t, left = int(p.top[i]), int(p.left[i])
        mixing_pic = pics[int(p.pic[i]), :, t:t + size, left:left + size].float().unsqueeze(0) / 255
        mixed = augment_input(0) if p.start_aug[i] else x01[i:i + 1]
        for r in range(int(p.rounds[i])):
            aug_image_copy = augment_input(r + 1) if p.use_aug[r, i] else mixing_pic
            a, b = p.a[r, i:i + 1], p.b[r, i:i + 1]
            mixed_op = pixmix.mix_multiply if p.multiply[r, i] else pixmix.mix_add
            mixed = torch.clip(mixed_op(mixed, aug_image_copy, a, b), 0, 1)
        out.append(mixed[0])
    return torch.stack(out)


@pytest.mark.parametrize(("k", "all_ops"), [(4, False), (4, True), (1, False)])
def test_batched_pixmix_equals_per_image_reference(images: torch.Tensor, mixing: torch.Tensor, k: int,
                                                   all_ops: bool) -> None:
    ops = list((AUGMENTATIONS_ALL if all_ops else AUGMENTATIONS).values())
    p = pixmix.sample_params(24, len(ops), torch.Generator().manual_seed(1), k, 3.0, 3.0, len(mixing), 4)
    assert p.rounds.max() == k  # some image runs every round
    ours = pixmix.pixmix(images, p, ops, mixing, torch.Generator().manual_seed(2))
    ref = per_image_pixmix(images, p, ops, mixing, torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    assert (ours - images).abs().amax(dim=(1, 2, 3)).gt(0).float().mean() > 0.5


def test_k0_is_the_augmented_original(images: torch.Tensor, mixing: torch.Tensor) -> None:
    """k = 0: no mixing round; each image is itself, or one AugMix op of itself (w.p. ½), never a fractal."""
    p = pixmix.sample_params(24, len(OPS), torch.Generator().manual_seed(3), 0, 3.0, 3.0, len(mixing), 4)
    assert (p.rounds == 0).all() and p.start_aug.any() and not p.start_aug.all()
    out = pixmix.pixmix(images, p, OPS, mixing, torch.Generator().manual_seed(4))
    keep = ~p.start_aug
    assert torch.equal(out[keep], images[keep])
    for i in p.start_aug.nonzero().flatten().tolist():
        op = OPS[int(p.op[0, i])]
        one = op((images[i:i + 1] * 255).round(), p.level[0, i:i + 1], p.sign[0, i:i + 1], torch.Generator()) / 255
        torch.testing.assert_close(out[i:i + 1], one, atol=0, rtol=0)


def test_mixing_picture_crop(mixing: torch.Tensor) -> None:
    idx, top, left = torch.tensor([3, 0, 15]), torch.tensor([0, 4, 2]), torch.tensor([4, 0, 1])
    got = pixmix.crop_pictures(mixing, idx, top, left, 32)
    for j in range(3):
        t, lf = int(top[j]), int(left[j])
        assert torch.equal(got[j], mixing[int(idx[j]), :, t:t + 32, lf:lf + 32].float() / 255)


# ------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("beta", [3.0, 4.0])
def test_get_ab_moments(beta: float) -> None:
    """get_ab: w.p. ½ (a, b) = (Beta(β, 1), Beta(1, β)), else (1 + Beta(1, β), −Beta(1, β)); the branch shows
    in a ≤ 1. Beta(α, β'): mean α/(α + β'), variance αβ'/((α + β')²(α + β' + 1))."""
    a, b = pixmix.get_ab(N, beta, torch.Generator().manual_seed(5))
    first = a <= 1
    assert_rate(first, 0.5)
    assert (b[first] >= 0).all() and (b[~first] <= 0).all() and (a[~first] >= 1).all() and (a <= 2).all()

    def check(x: torch.Tensor, al: float, be: float) -> None:
        mean, var = al / (al + be), al * be / ((al + be) ** 2 * (al + be + 1))
        assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / x.numel())
        assert abs(x.var().item() - var) < 0.1 * var

    check(a[first], beta, 1.0)
    check(b[first], 1.0, beta)
    check(a[~first] - 1, 1.0, beta)
    check(-b[~first], 1.0, beta)
    # independent draws within a pair
    assert abs(torch.corrcoef(torch.stack([a[first], b[first]]))[0, 1].item()) < 0.05


def test_choice_frequencies() -> None:
    g = torch.Generator().manual_seed(6)
    p = pixmix.sample_params(N, 13, g, 4, 3.0, 3.0, 10, 4)
    for r in range(5):  # rounds ~ U{0 … k} (np.random.randint(k + 1))
        assert_rate(p.rounds == r, 0.2)
    assert_rate(p.start_aug, 0.5)
    assert_rate(p.use_aug, 0.5)
    assert_rate(p.multiply, 0.5)  # np.random.choice([add, multiply])
    for op in range(13):  # np.random.choice(aug_list)
        assert_rate(p.op == op, 1 / 13)
    assert p.level.min() >= 0.1 and p.level.max() <= 3.0  # sample_level: U(0.1, severity)
    assert abs(p.level.mean().item() - 1.55) < 0.01
    assert_rate(p.sign > 0, 0.5)
    for v in range(10):  # np.random.choice(len(mixing_set))
        assert_rate(p.pic == v, 0.1)
    for off in range(5):  # RandomCrop(32) of the 36-px picture
        assert_rate(p.top == off, 0.2)
        assert_rate(p.left == off, 0.2)
    # the augmented copies a batch needs: row 0 w.p. ½; round t w.p. ½·P(rounds > t)
    need = p.augmented(13) < 13
    assert_rate(need[0], 0.5)
    for t in range(4):
        assert_rate(need[t + 1], 0.5 * (4 - t) / 5)


# ------------------------------------------------------ the mixing set (fractals: test_augment_fractals.py)


def test_image_folder_is_a_mixing_set(tmp_path: Path, images: torch.Tensor) -> None:
    for i in range(3):
        sub = tmp_path / f"class{i}"
        sub.mkdir()
        Image.fromarray((images[i] * 255).round().byte().permute(1, 2, 0).numpy()).save(sub / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    pics = fractals.image_folder(tmp_path, 36)
    assert pics.shape == (3, 3, 36, 36) and pics.dtype == torch.uint8
    for i in range(3):  # Resize(36) + CenterCrop(36) of each file, in sorted order
        ref = torch.nn.functional.interpolate(images[i:i + 1] * 255, size=36, mode="bilinear", antialias=True)
        assert (pics[i].float() - ref[0].round()).abs().mean() < 1.5
    two = fractals.image_folder(tmp_path, 36, limit=2)  # a fixed subset, not the first two
    assert two.shape[0] == 2 and torch.equal(two, fractals.image_folder(tmp_path, 36, limit=2))
    fam = build_family("pixmix", 32, mixing_set=str(tmp_path), mixing_set_size=0)
    out = fam(images[:8], torch.Generator().manual_seed(10))
    assert out.shape == (8, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert isinstance(fam, pixmix.PixMix) and torch.equal(fam.pictures(torch.device("cpu")), pics)


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        fractals.image_folder(tmp_path, 36)
    with pytest.raises(ValueError, match="mixing_set must be 'fractals' or an existing folder"):
        build_family("pixmix", 32, mixing_set=str(tmp_path / "missing"))


# ----------------------------------------------------------------------------------------- the family


def test_family_defaults_follow_the_reference_scripts() -> None:
    small, large = build_family("pixmix", 32), build_family("pixmix", 224)
    assert isinstance(small, pixmix.PixMix) and isinstance(large, pixmix.PixMix)
    # the README's training recipes pass --all-ops (augmentations_all, 13 ops) to both scripts
    assert (small.k, small.beta, small.severity, small.ops) == (4, 3.0, 3.0, list(AUGMENTATIONS_ALL.values()))
    assert (large.k, large.beta, large.severity, len(large.ops)) == (4, 4.0, 1.0, 13)  # imagenet.py
    assert build_family("pixmix", 32, all_ops=False).ops == OPS  # the scripts' own flag default: 9 AugMix ops
    assert small.crop_spec.kind == "pad" and large.crop_spec.kind == "rrc"
    assert (pixmix.mixing_size(32), pixmix.mixing_size(224)) == (36, 256)  # Resize(36) / Resize(256)
    assert not isinstance(small.mixing, torch.Tensor)  # the fractals are made on first use


def test_family_views_are_deterministic_per_seed(images: torch.Tensor) -> None:
    fam = build_family("pixmix", 32, mixing_set_size=16)
    a = fam(images, torch.Generator().manual_seed(11))
    b = fam(images, torch.Generator().manual_seed(11))
    c = fam(images, torch.Generator().manual_seed(12))
    assert a.shape == (24, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_bad_parameter_is_one_line_at_recipe_validation(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        f'extends = "{ROOT / "recipes/families/pixmix.toml"}"\n[pretext]\nfamilies = [\n'
        '  { name = "pixmix", weight = 0.5, params = { beta = 0.0 } },\n  { name = "moco_v2", weight = 0.5 },\n]\n')
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and "pretext.families[0].params.beta: must be in (0, ∞), got 0.0" in lines[0]


def test_recipe_validates_and_builds_eq2_sampler(images: torch.Tensor) -> None:
    recipe = load(str(ROOT / "recipes/families/pixmix.toml"))
    assert [s.name for s in recipe.pretext.family_weights()] == ["pixmix", "moco_v2"]
    assert recipe.pretext.family_weights()[0].params["all_ops"] is True  # the paper's setting, named in the recipe
    result = CliRunner().invoke(app, ["recipe", "validate", str(ROOT / "recipes/families/pixmix.toml")])
    assert result.exit_code == 0, result.output
    sampler = build_sampler([FamilySpec(name="pixmix", weight=0.5, params={"mixing_set_size": 16}),
                             FamilySpec(name="moco_v2", weight=0.5)], image_size=32, views=2)
    x = (images * 255).round().to(torch.uint8)
    views, fam = sampler(x, torch.Generator().manual_seed(13))
    assert len(views) == 2 and views[1].shape == (24, 3, 32, 32) and set(fam.unique().tolist()) == {0, 1}


def test_worker_and_photometric_paths(images: torch.Tensor) -> None:
    """The family pickles (before and after its mixing set exists), runs in a DataLoader worker as
    ``urrl pretrain`` on a CPU does, and exposes the crop-first split used for crops of original images."""
    sampler = build_sampler([FamilySpec(name="pixmix", weight=1.0, params={"mixing_set_size": 16}),
                             FamilySpec(name="moco_v2", weight=1.0)], image_size=32, views=2)
    x = (images * 255).round().to(torch.uint8)
    items = [(x[i], i) for i in range(len(x))]
    collate = AugmentingCollate(sampler, seed=0)
    here = collate(items[:8])
    loader = DataLoader(items, batch_size=8, num_workers=1, collate_fn=collate)
    there = next(iter(loader))  # fractals made in the worker from the pickled, not yet built, family
    assert all(torch.equal(a, b) for a, b in zip(here[0], there[0], strict=True))
    assert torch.equal(here[1], there[1])
    again = pickle.loads(pickle.dumps(sampler))  # now with the mixing set built
    assert all(torch.equal(a, b) for a, b in zip(collate(items[:8])[0], AugmentingCollate(again, 0)(items[:8])[0],
                                                 strict=True))
    assert [s.kind for s in sampler.crop_specs()] == ["pad", "rrc"]
    fam = torch.tensor([[0] * 12 + [1] * 12, [1] * 12 + [0] * 12])
    views = sampler.photometric(torch.cat([x, x]), fam, torch.Generator().manual_seed(14))
    assert len(views) == 2 and views[0].shape == (24, 3, 32, 32)
