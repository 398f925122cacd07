"""The engine-facing contract: build_sampler / FamilySampler / supervised_transform, recipes, registration."""

from __future__ import annotations

import pytest
import torch

from urrlkit.augment import FamilySampler, build_sampler, supervised_transform
from urrlkit.augment.families import default_severity
from urrlkit.config import FamilySpec, validate_dict
from urrlkit.data import DataRequest, build
from urrlkit.errors import UrrlError
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.registry import FAMILIES

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BUILTIN = ["moco_v2", "augmix", "augmix_allop", "augmix_moco", "identity"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return build("cifar10-sample", DataRequest(None, "train", 32)).images[:64]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BUILTIN)
def test_family_output_contract(images: torch.Tensor, name: str, device: str) -> None:
    sampler = build_sampler([FamilySpec(name=name)], image_size=32, views=3)
    g = torch.Generator(device).manual_seed(0)
    views, fam = sampler(images.to(device), g)
    assert len(views) == 3
    for v in views:
        assert v.shape == (64, 3, 32, 32) and v.dtype == torch.float32 and v.device.type == device
        assert v.min() >= 0 and v.max() <= 1 and torch.isfinite(v).all()
    assert fam.dtype == torch.long and fam.shape == (3, 64) and (fam == 0).all()
    assert sampler.names == [name]


def test_urrl_from_recipe(images: torch.Tensor) -> None:
    recipe = validate_dict({"pretext": {"p": 0.5}})
    sampler = build_sampler(recipe.pretext.family_weights(), image_size=32)
    assert isinstance(sampler, FamilySampler)
    assert sampler.names == ["augmix_allop", "moco_v2"] and sampler.probabilities == [0.5, 0.5]
    views, fam = sampler(images, torch.Generator().manual_seed(1))
    assert len(views) == 2 and set(fam.unique().tolist()) == {0, 1}


def test_recipe_family_params_reach_the_family() -> None:
    recipe = validate_dict({"pretext": {"families": [
        {"name": "augmix_allop", "weight": 1, "params": {"severity": 2, "depth": 1, "crop": "rrc"}},
        {"name": "moco_v2", "weight": 3, "params": {"blur_p": 0.0}},
    ]}})
    sampler = build_sampler(recipe.pretext.family_weights(), image_size=32)
    am, moco = sampler.families
    assert am.severity == 2.0 and am.depth == 1 and am.crop == "rrc" and len(am.ops) == 13
    assert moco.blur_p == 0.0
    assert sampler.probabilities == [0.25, 0.75]


def test_recipe_rejects_unknown_family_param() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'severty'.*did you mean 'severity'"):
        FamilySpec(name="augmix", params={"severty": 3})


def test_family_defaults() -> None:
    assert default_severity(32) == 3.0 and default_severity(64) == 3.0 and default_severity(224) == 1.0
    s = build_sampler([FamilySpec(name="augmix"), FamilySpec(name="augmix_moco")], image_size=224)
    assert [f.crop for f in s.families] == ["rrc", "rrc"] and s.families[0].severity == 1.0
    assert len(s.families[0].ops) == 9 and len(s.families[1].ops) == 16
    assert build_sampler([FamilySpec(name="augmix")], 32).families[0].crop == "pad"


def test_bad_family_params_raise() -> None:
    with pytest.raises(ValueError, match="crop"):
        build_sampler([FamilySpec(name="augmix", params={"crop": "zoom"})], 32)
    with pytest.raises(UrrlError, match="unknown augmentation family"):
        FAMILIES.get("augmixx")


def test_reproducible_from_seed(images: torch.Tensor) -> None:
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32)
    a, fa = sampler(images, torch.Generator().manual_seed(7))
    b, fb = sampler(images, torch.Generator().manual_seed(7))
    c, _ = sampler(images, torch.Generator().manual_seed(8))
    assert torch.equal(fa, fb) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_uint8_and_float_inputs_agree(images: torch.Tensor) -> None:
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32)
    a, _ = sampler(images, torch.Generator().manual_seed(9))
    b, _ = sampler(images.float() / 255, torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", BUILTIN)
def test_larger_stored_images_are_cropped(name: str) -> None:
    x = torch.randint(0, 256, (6, 3, 80, 80), dtype=torch.uint8)
    views, _ = build_sampler([FamilySpec(name=name)], image_size=64)(x, torch.Generator().manual_seed(0))
    assert views[0].shape == (6, 3, 64, 64)


def test_views_come_from_their_family(images: torch.Tensor) -> None:
    # identity views are the (uncropped) input; moco views are not — the family index is truthful.
    sampler = build_sampler([FamilySpec(name="identity"), FamilySpec(name="moco_v2")], image_size=32)
    views, fam = sampler(images, torch.Generator().manual_seed(2))
    x = images.float() / 255
    for v, f in zip(views, fam, strict=True):
        same = (v == x).flatten(1).all(1)
        assert torch.equal(same, f == 0)


def test_cpu_chunks_keep_families_and_deterministic_views(images: torch.Tensor) -> None:
    """Chunked family calls (the CPU default) draw the same families and leave deterministic views untouched;
    only the random draws inside a family are split into chunks."""
    specs = [FamilySpec(name="identity"), FamilySpec(name="moco_v2")]
    whole = build_sampler(specs, image_size=32, chunk_mib=None)
    chunked = build_sampler(specs, image_size=32, chunk_mib=5 * 3 * 32 * 32 * 4 / 2**20)  # 5 images a call
    assert whole.chunk_size(images) is None and chunked.chunk_size(images) == 5
    (va, fa), (vb, fb) = (s(images, torch.Generator().manual_seed(4)) for s in (whole, chunked))
    assert torch.equal(fa, fb)
    for a, b, f in zip(va, vb, fb, strict=True):
        assert torch.equal(a[f == 0], b[f == 0])  # identity views, whatever the chunking
        assert not torch.equal(a[f == 1], b[f == 1])  # moco draws per chunk: another (equally valid) stream
        assert b.shape == a.shape and b.min() >= 0 and b.max() <= 1
    # The default budget: about 8 MiB of float32 pixels per call on the CPU.
    default = build_sampler(specs, image_size=224)
    assert default.chunk_size(torch.zeros(1, 3, 256, 256, dtype=torch.uint8)) == 10
    assert default.chunk_size(torch.zeros(1, 3, 256, 256, dtype=torch.uint8, device="meta")) is None
    with pytest.raises(ValueError, match="chunk_mib"):
        build_sampler(specs, image_size=32, chunk_mib=0)


def test_views_can_be_written_into_a_given_buffer(images: torch.Tensor) -> None:
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32)
    ref, ref_fam = sampler(images, torch.Generator().manual_seed(5))
    buf = torch.full((2 * len(images), 3, 32, 32), -1.0).share_memory_()
    views, fam = sampler(images, torch.Generator().manual_seed(5), out=buf)
    assert torch.equal(fam, ref_fam) and all(torch.equal(a, b) for a, b in zip(views, ref, strict=True))
    assert views[0].data_ptr() == buf.data_ptr() and buf.min() >= 0  # every view written, in place
    with pytest.raises(ValueError, match="out must be"):
        sampler(images, torch.Generator(), out=torch.empty(3, 3, 32, 32))


def test_register_new_family_without_touching_sampler(images: torch.Tensor) -> None:
    @FAMILIES.register("test_invert")
    def invert(image_size: int, strength: float = 1.0):
        def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return (strength * (1 - x) + (1 - strength) * x)[..., :image_size, :image_size]
        return apply

    try:
        spec = FamilySpec(name="test_invert", weight=1, params={"strength": 1.0})
        with pytest.raises(ValueError, match="unknown parameter"):
            FamilySpec(name="test_invert", params={"strenght": 1.0})
        sampler = build_sampler([spec, FamilySpec(name="moco_v2", weight=0)], image_size=32)
        views, fam = sampler(images, torch.Generator().manual_seed(3))
        assert (fam == 0).all() and sampler.names[0] == "test_invert"
        torch.testing.assert_close(views[0], 1 - images.float() / 255)
    finally:
        FAMILIES._items.pop("test_invert")


def test_sampler_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        FamilySampler(["a"], [0.0], [lambda x, g: x], 32)
    with pytest.raises(ValueError):
        build_sampler([], 32)


# ------------------------------------------------------------------------------------ supervised


def test_supervised_eval_is_deterministic_center_crop() -> None:
    x = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    out = supervised_transform("crop_flip", 224, train=False)(x, None)
    torch.testing.assert_close(out, x[..., 16:240, 16:240].float() / 255)  # Resize(256) + CenterCrop(224)
    small = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(supervised_transform("none", 32)(small, None), small.float() / 255)
    big = supervised_transform("none", 224, train=False)(torch.rand(2, 3, 512, 512), None)
    assert big.shape == (2, 3, 224, 224)


def test_supervised_train_small_is_pad_crop_flip(images: torch.Tensor) -> None:
    t = supervised_transform("crop_flip", 32, train=True)
    out = t(images, torch.Generator().manual_seed(4))
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    x = images.float() / 255
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(64):
        found = None
        for cand, is_flip in ((out[i], False), (out[i].flip(-1), True)):
            windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1)
            if (windows == cand[:, None, None]).flatten(3).all(3).all(0).any():
                found = is_flip
                break
        assert found is not None, f"sample {i} is not a padded crop (+ flip)"
        flipped += found
    assert 10 < flipped < 54
    assert not torch.equal(out, t(images, torch.Generator().manual_seed(5)))


def test_supervised_train_large_is_random_resized_crop() -> None:
    x = torch.rand(8, 3, 256, 256)
    out = supervised_transform("crop_flip", 224, train=True)(x, torch.Generator().manual_seed(6))
    assert out.shape == (8, 3, 224, 224) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        supervised_transform("crop_flip", 224, train=True)(x, None)
    with pytest.raises(ValueError):
        supervised_transform("mixup", 32)
