"""Corruption ops: faithfulness to the reference's primitives, determinism, layouts and readers."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from urrlkit.errors import DataError, UrrlError
from urrlkit.evaluate.corruptions import ALL, COMMON, PARAMS, corrupt, ops, size_class
from urrlkit.evaluate.corruptions import official as off
from urrlkit.evaluate.corruptions.generate import run_corrupt
from urrlkit.evaluate.corruptions.textures import frost_textures, make_texture
from urrlkit.registry import CORRUPTIONS

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"
CIFAR = CIFAR.resolve() if CIFAR.exists() else Path("/work/shared/data/cifar10")


def _images(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random images (a blurred field plus a gradient), closer to photos than white noise
    x = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8)


def test_table_complete_and_size_classes():
    assert len(COMMON) == 15 and len(ALL) == 19
    for cls in ("cifar", "tiny", "imagenet"):
        for name in ALL:
            assert len(PARAMS[cls][name]) == 5, (cls, name)
            assert name in CORRUPTIONS
    # one table per reference script, picked by size as the scripts are run (32, 64, 224 px)
    assert [size_class(s) for s in (32, 45, 46, 64, 119, 120, 224)] == ["cifar"] * 2 + ["tiny"] * 3 + ["imagenet"] * 2
    assert PARAMS["cifar"]["gaussian_noise"][4] == 0.10 and PARAMS["imagenet"]["gaussian_noise"][4] == 0.38


@pytest.mark.parametrize("name", ALL)
def test_every_op_shape_dtype_determinism(name):
    x = _images(4)
    a = corrupt(x, name, 3, seed=1)
    b = corrupt(x, name, 3, seed=1)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert not torch.equal(a, x)


def test_random_ops_depend_on_seed_and_severity_strength():
    x = _images(8)
    assert not torch.equal(corrupt(x, "gaussian_noise", 3, seed=1), corrupt(x, "gaussian_noise", 3, seed=2))
    for name in (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "zoom_blur",
        "contrast",
        "pixelate",
        "jpeg_compression",
        "gaussian_blur",
    ):
        d1 = (corrupt(x, name, 1).float() - x.float()).abs().mean()
        d5 = (corrupt(x, name, 5).float() - x.float()).abs().mean()
        assert d5 > d1, name


def test_batching_does_not_change_results():
    x = _images(300)
    whole = corrupt(x, "shot_noise", 2, seed=4)
    parts = torch.cat(
        [corrupt(x[:256], "shot_noise", 2, seed=4), corrupt(x[256:], "shot_noise", 2, seed=4, start=256)]
    )
    assert torch.equal(whole, parts)


def test_gaussian_blur_matches_scipy():
    x = _images(2).float() / 255
    for sigma in (0.4, 1.0, 6.0):
        ours = ops.gaussian(x, sigma).numpy()
        ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
        assert np.abs(ours - ref).max() < 1e-5
    ours = ops.gaussian(x, 2.0, mode="reflect", truncate=3).numpy()
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 2.0, 2.0), mode="reflect", truncate=3.0)
    assert np.abs(ours - ref).max() < 1e-5


def test_zoom_matches_scipy_clipped_zoom():
    img = np.random.default_rng(0).random((32, 32)).astype(np.float64)
    for z in (1.0, 1.06, 1.25, 1.75, 2.25):
        h = 32
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        big = ndimage.zoom(img[top : top + ch, top : top + ch], z, order=1)
        trim = (big.shape[0] - h) // 2
        ref = big[trim : trim + h, trim : trim + h]
        ours = ops.clipped_zoom(torch.from_numpy(img)[None, None], z)[0, 0].numpy()
        assert np.abs(ours - ref).max() < 1e-9, z


def test_pixelate_matches_pillow_box():
    x = _images(3)
    for sev in (1, 5):
        c = PARAMS["cifar"]["pixelate"][sev - 1]
        ours = corrupt(x, "pixelate", sev)
        for i in range(3):
            im = Image.fromarray(x[i].permute(1, 2, 0).numpy())
            ref = im.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
            diff = np.abs(np.asarray(ref).astype(int) - ours[i].permute(1, 2, 0).numpy().astype(int))
            assert diff.max() <= 1


def test_jpeg_close_to_pillow():
    x = _images(4)
    ours = corrupt(x, "jpeg_compression", 5)  # quality 40
    diffs = []
    for i in range(4):
        buf = io.BytesIO()
        Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=40)
        ref = np.asarray(Image.open(buf)).astype(int)
        diffs.append(np.abs(ref - ours[i].permute(1, 2, 0).numpy().astype(int)).mean())
    assert max(diffs) < 1.0  # same libjpeg family; at most rounding-level differences


def test_hsv_roundtrip_and_brightness_by_hand():
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    assert torch.allclose(ops.hsv_to_rgb(ops.rgb_to_hsv(x)), x, atol=1e-12)
    import colorsys

    r, g, b = 0.2, 0.4, 0.6
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    ours = ops.rgb_to_hsv(torch.tensor([r, g, b], dtype=torch.float64).view(1, 3, 1, 1)).flatten().tolist()
    assert ours == pytest.approx([h, s, v])
    px = torch.tensor([51, 102, 153], dtype=torch.uint8).view(1, 3, 1, 1)  # (.2, .4, .6): V .6 → .65 at sev 1
    out = corrupt(px, "brightness", 1).flatten().tolist()
    expect = [math.floor(255 * v * 0.65 / 0.6 + 1e-3) for v in (0.2, 0.4, 0.6)]
    assert out == expect


def test_contrast_by_hand():
    x = torch.tensor([0, 100, 200, 100], dtype=torch.uint8).view(1, 1, 2, 2).expand(1, 3, 2, 2).contiguous()
    out = corrupt(x, "contrast", 1)  # c = .75 around the per-channel mean 100
    assert out[0, 0].flatten().tolist() == [25, 100, 175, 100]


def test_glass_blur_copies_instead_of_swapping():
    # a single dark pixel can only move down/right (offsets in {-1, 0}), and it is copied, not swapped
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    x[0, :, 10, 10] = 0
    y = corrupt(x, "glass_blur", 1, seed=1)  # sigma .05: no visible blur
    dark = (y[0, 0] < 128).nonzero().tolist()
    assert [10, 10] in dark or len(dark) >= 1
    assert all(r >= 10 and c >= 10 and r <= 11 and c <= 11 for r, c in dark)


def test_motion_blur_kernel_and_direction():
    k = ops.motion_kernel(6, 1.0)
    assert k.numel() == 13 and float(k.sum()) == pytest.approx(1.0) and k[0] == k.max()
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1.0
    y = ops.motion_blur_batch(x, 2, 1.0, torch.tensor([0.0]))
    # angle 0: out(y, x) samples img(y, x + i) → the bright pixel spreads to the left, row 4 only
    assert y[0, 0, 4, :5].tolist() == pytest.approx(ops.motion_kernel(2, 1.0).flip(0).tolist())
    assert float(y[0, 0].sum()) == pytest.approx(1.0)


def test_frost_textures_deterministic():
    a, b = make_texture(0, 64), make_texture(0, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, make_texture(1, 64))
    t = frost_textures(0.2)
    assert len(t) == 6 and t[0].shape[-1] > 32


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_op_at_224(name):
    y = corrupt(_images(2, 224), name, 5)
    assert y.shape == (2, 3, 224, 224)


def test_ops_at_224_smoke():
    x = _images(1, 224)
    for name in ("gaussian_noise", "defocus_blur", "motion_blur", "fog", "frost", "elastic_transform"):
        assert corrupt(x, name, 2).shape == x.shape


def test_bad_arguments():
    with pytest.raises(UrrlError, match="unknown corruption 'fogg'"):
        corrupt(_images(1), "fogg", 1)
    with pytest.raises(UrrlError, match="severity"):
        corrupt(_images(1), "fog", 6)
    with pytest.raises(UrrlError, match="uint8"):
        corrupt(torch.rand(1, 3, 8, 8), "fog", 1)


def test_readers_npy_and_folder(tmp_path):
    n = 6
    arr = np.stack([np.full((32, 32, 3), s * 10 + i, np.uint8) for s in range(5) for i in range(n)])
    np.save(tmp_path / "fog.npy", arr)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(n), 5))
    batches = list(off.iter_npy(tmp_path, "fog", 3, batch_size=4))
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (n, 3, 32, 32) and int(x[0, 0, 0, 0]) == 20 and int(x[5, 0, 0, 0]) == 25
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(n))
    with pytest.raises(DataError, match=r"snow\.npy"):
        off.check_root(tmp_path, "cifar10-c", ["fog", "snow"], "eval.corruptions.root")
    # ImageNet-C layout with 64 px images read at 64 px: pixels unchanged (no resize / crop)
    for wnid, val in (("n01", 10), ("n02", 200)):
        d = tmp_path / "inc" / "fog" / "1" / wnid
        d.mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), val, np.uint8)).save(d / "a.png")
    ds = off.folder_dataset(tmp_path / "inc", "fog", 1, 64, ["n02", "n01"])
    assert [ds[i][1] for i in range(2)] == [1, 0] and int(ds[1][0][0, 0, 0]) == 200
    with pytest.raises(DataError, match="not one of the model's classes"):
        off.folder_dataset(tmp_path / "inc", "fog", 1, 64, ["n09"])


@pytest.mark.skipif(not (CIFAR / "test.npz").is_file(), reason="shared CIFAR-10 not present")
def test_run_corrupt_writes_official_layout(tmp_path):
    out = run_corrupt(
        "cifar10", tmp_path / "c10c", root=CIFAR, limit=12, corruptions=["fog", "pixelate"], seed=3
    )
    fog = np.load(out / "fog.npy")
    labels = np.load(out / "labels.npy")
    assert fog.shape == (60, 32, 32, 3) and fog.dtype == np.uint8 and labels.shape == (60,)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["size_class"] == "cifar" and meta["seed"] == 3 and meta["layout"] == "npy"
    # block for severity 2 equals corrupting the same images in memory with the same seed
    from urrlkit.data import DataRequest, build, to_tensors

    imgs, _ = to_tensors(build("cifar10", DataRequest(root=CIFAR, split="test", size=32, limit=12)))
    assert np.array_equal(fog[12:24], corrupt(imgs, "fog", 2, seed=3).permute(0, 2, 3, 1).numpy())


# ------------------------------------------------------------------ reference tables and the fixed deviations


def test_tiny_table_used_at_64_px():
    """make_tinyimagenet_c.py's own values at 64 px (contrast 0.4 at severity 1, CIFAR's is 0.75)."""
    x = _images(2, 64)
    y = ops.OPS["contrast"](x.double() / 255, 1, ops.Rand.from_seed(0))
    m = (x.double() / 255).mean((2, 3), keepdim=True)
    assert torch.allclose(y, ((x.double() / 255 - m) * 0.4 + m).clamp(0, 1))
    assert PARAMS["tiny"]["frost_scale"] == [0.3] and PARAMS["tiny"]["saturate"][4] == (30, 0.2)


def test_spatter_water_colour_is_175_238_238_rgb():
    """The reference adds (175, 238, 238)/255 · m to the RGB array in channel order."""
    x = torch.zeros(4, 3, 32, 32, dtype=torch.float64)
    y = ops.OPS["spatter"](x, 3, ops.Rand.from_seed(1))  # severity 3: water
    wet = y[:, 0] > 0
    assert wet.any()
    assert torch.allclose(y[:, 1][wet] / y[:, 0][wet], torch.full_like(y[:, 0][wet], 238 / 175))
    assert torch.allclose(y[:, 2][wet], y[:, 1][wet])


def test_cv_ops_by_hand():
    from urrlkit.evaluate.corruptions import cv_ops

    zero = np.zeros((7, 7), bool)
    zero[3, 3] = True
    d = cv_ops.chamfer_distance(zero, 20)
    assert d[3, 4] == 1 and d[4, 4] == pytest.approx(1.4) and d[4, 5] == pytest.approx(2.1969)
    assert d[3, 6] == 3 and d[6, 6] == pytest.approx(4.2, abs=1e-5)
    img = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8) * 100
    assert cv_ops.equalize_hist(img).tolist() == [[0, 0, 255, 255], [0, 0, 255, 255]]
    step = np.zeros((9, 9), np.uint8)
    step[:, 5:] = 200
    edges = cv_ops.canny(step, 50, 150)
    # a vertical step: one thin edge column (the larger side of the non-maximum suppression tie)
    assert edges.any() and edges.sum(0).nonzero()[0].size == 1 and edges[:, edges.any(0)].all()


def _solid_textures(folder: Path, values: list[int]) -> None:
    folder.mkdir()
    for k, v in enumerate(values):
        Image.fromarray(np.full((200, 200, 3), v, np.uint8)).save(folder / f"frost{k + 1}.png")


def test_frost_draws_from_the_first_five_textures(tmp_path, monkeypatch):
    from urrlkit.evaluate.corruptions import textures as tex

    values = [50, 100, 150, 200, 250, 25]
    _solid_textures(tmp_path / "frost", values)
    monkeypatch.setenv("URRL_FROST_TEXTURES", str(tmp_path / "frost"))
    tex.reset()
    try:
        assert "URRL_FROST_TEXTURES" in tex.frost_source() and not tex.uses_fallback()
        y = corrupt(torch.zeros(200, 3, 32, 32, dtype=torch.uint8), "frost", 1, seed=0)  # 1·x + 0.2·frost
        seen = set(y[:, 0, 0, 0].tolist())
        assert seen == {int(0.2 * v + 1e-3) for v in values[:5]}  # frost6 never drawn, as randint(5)
    finally:
        monkeypatch.delenv("URRL_FROST_TEXTURES")
        tex.reset()


def test_frost_fallback_is_named(monkeypatch):
    import importlib.util

    from urrlkit.evaluate.corruptions import textures as tex

    if importlib.util.find_spec("imagecorruptions") is not None:
        pytest.skip("the frost extra is installed")
    monkeypatch.delenv("URRL_FROST_TEXTURES", raising=False)
    tex.reset()
    with pytest.warns(UserWarning, match="procedural"):
        corrupt(_images(1), "frost", 1)
    assert tex.uses_fallback() and "procedural" in tex.frost_source()


def test_frost_with_the_extra_uses_the_reference_photographs():
    """With `urrlkit[frost]` installed: the six reference photographs, perturbation at 224 px in the
    reference's range (benchmarks/results/corrupt_fidelity.json has the full comparison)."""
    import importlib.util

    from urrlkit.evaluate.corruptions import textures as tex

    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("pip install 'urrlkit[frost]' to run")
    tex.reset()
    assert "reference photographs" in tex.frost_source()
    textures = tex.frost_textures(1.0)
    assert len(textures) == 6 and tuple(textures[0].shape[-2:]) == (600, 900)
