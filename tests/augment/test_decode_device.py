"""JPEGs decoded and cut on the training device (augment/device_crops.py, data.decode = "device"), run here with
device = "cpu" (torchvision's decode_jpeg decodes on the CPU too): the same boxes as the CPU path for the same
seed, the pixels of PIL's crop + bilinear resize within ±2 (measured: max 2, mean ≈ 0.006 at 224 px), the
per-item fallbacks, and pretraining end to end. URRL_TEST_GPU=1 adds the CUDA (nvJPEG) checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from paper_trees import imagenet_tree
from PIL import Image
from torch.utils.data import DataLoader

from urrlkit.augment import build_sampler
from urrlkit.augment.device_crops import (
    EncodedViewsCollate,
    decode_views,
    encoded_source,
    filter_taps,
    read_encoded,
    resample_boxes,
)
from urrlkit.augment.geometry import rrc_boxes
from urrlkit.augment.workers import OriginalViewsCollate
from urrlkit.config import load
from urrlkit.data import originals
from urrlkit.data.datasets import FileDataset, load_image
from urrlkit.errors import DataError, UrrlError
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.workflow import Indexed, decode_on_device, pretrain

ROOT = Path(__file__).resolve().parents[2]
GPU = os.environ.get("URRL_TEST_GPU") == "1" and torch.cuda.is_available()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet-layout JPEGs, plus a PNG, a grayscale JPEG and a CMYK JPEG in class 0 (the fallbacks)."""
    root = imagenet_tree(tmp_path_factory.mktemp("jpeg"), classes=2, train_per_class=6, val_per_class=0)
    photo = Image.open(next((root / "train" / "n00000000").glob("*.JPEG"))).convert("RGB")
    folder = root / "train" / "n00000000"
    photo.resize((280, 210)).save(folder / "z_png.png")
    photo.convert("L").resize((210, 280)).save(folder / "z_gray.JPEG", quality=90)
    photo.convert("CMYK").resize((300, 240)).save(folder / "z_cmyk.JPEG", quality=90)
    return root


def files(tree: Path) -> FileDataset:
    paths = sorted(p for p in (tree / "train").rglob("*") if p.is_file())
    labels = [int(p.parent.name[1:]) for p in paths]
    return FileDataset(paths, labels, ["a", "b"], size=64)


def urrl_sampler(size: int) -> object:
    return build_sampler(MoCoV2(p=0.5).family_weights(), image_size=size, views=2)


def test_workers_read_bytes_and_header_sizes_and_decode_only_the_fallbacks(tree: Path) -> None:
    for path in files(tree).files:
        e = read_encoded(path)
        full = load_image(path, None)
        assert (e.height, e.width) == tuple(full.shape[-2:])
        if path.stem.startswith("z_"):  # PNG, grayscale, CMYK: decoded in the worker as the CPU path does
            assert e.data is None and torch.equal(e.image, full)
        else:
            assert e.image is None and e.data.dtype == torch.uint8 and e.data.numel() == path.stat().st_size


def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.JPEG"):
        read_encoded(bad)


def test_filter_taps_are_pils_triangle_filter() -> None:
    # Same size: the identity. Halving a 4-pixel box: output centres at 1 and 3, the triangle widened to ±2:
    # weights 1 − |x + ½ − centre| / 2 = ¾ ¾ ¼ for pixels 0–2, normalised (PIL's precompute_coeffs).
    eye = filter_taps(torch.tensor([3]), torch.tensor([5]), 5, 10)[0]
    assert torch.equal(eye[:, 3:8], torch.eye(5)) and eye[:, :3].abs().sum() == 0 and eye[:, 8:].abs().sum() == 0
    half = filter_taps(torch.tensor([0]), torch.tensor([4]), 2, 4)[0]
    expect = torch.tensor([[3.0, 3.0, 1.0, 0.0], [0.0, 1.0, 3.0, 3.0]]) / 7
    assert torch.allclose(half, expect)
    flipped = filter_taps(torch.tensor([0]), torch.tensor([4]), 2, 4, torch.tensor([True]))[0]
    assert torch.equal(flipped, half.flip(0))


@pytest.mark.parametrize("size", [224, 64])
def test_device_resize_matches_pil_crop_resize(tree: Path, size: int) -> None:
    from urrlkit.augment.device_crops import cpu_reference

    images = [load_image(p, None) for p in files(tree).files if not p.stem.startswith("z_")]
    g = torch.Generator().manual_seed(size)
    h = torch.tensor([im.shape[-2] for im in images]).repeat_interleave(3)
    w = torch.tensor([im.shape[-1] for im in images]).repeat_interleave(3)
    boxes = [x.view(-1, 3) for x in rrc_boxes(h, w, (0.08, 1.0), (3 / 4, 4 / 3), g)]
    flip = (torch.rand(h.shape[0], generator=g) < 0.5).view(-1, 3)
    ours = resample_boxes(images, *boxes, flip, size=size).int()
    diff = (ours - cpu_reference(images, *boxes, flip, size=size).int()).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.02  # rounding of PIL's 22-bit fixed-point taps


def test_same_boxes_and_views_as_the_cpu_path(tree: Path) -> None:
    ds = files(tree)
    sampler = urrl_sampler(96)
    items_cpu = [Indexed(originals(ds))[i] for i in range(len(ds))]
    items_dev = [Indexed(encoded_source(ds))[i] for i in range(len(ds))]
    cuts, fam_cpu, index = OriginalViewsCollate(sampler, seed=7)(items_cpu)
    enc, fam_dev, index_dev = EncodedViewsCollate(sampler, seed=7)(items_dev)
    assert torch.equal(fam_cpu, fam_dev) and torch.equal(index, index_dev)
    ref = torch.cat(cuts).int()
    ours = decode_views(enc, "cpu").int()
    assert ours.shape == ref.shape
    diff = (ours - ref).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.02  # other boxes would differ by tens of levels
    fallback = torch.tensor([p.stem.startswith("z_") for p in ds.files]).repeat(2)
    assert torch.equal(enc.cpu_rows, torch.nonzero(fallback).flatten())  # PNG, gray, CMYK: cut in the worker
    assert torch.equal(ours[fallback], ref[fallback])  # and exactly as the CPU path cuts them
    again, _, _ = EncodedViewsCollate(sampler, seed=7)(items_dev)
    assert torch.equal(again.top, enc.top) and again.photo_seed == enc.photo_seed
    other, _, _ = EncodedViewsCollate(sampler, seed=8)(items_dev)
    assert not torch.equal(other.top, enc.top)


def test_in_dataloader_workers(tree: Path) -> None:
    ds = encoded_source(files(tree))
    sampler = urrl_sampler(64)
    loader = DataLoader(Indexed(ds), batch_size=4, num_workers=1, collate_fn=EncodedViewsCollate(sampler, 3))
    batches = list(loader)
    serial = [EncodedViewsCollate(sampler, 3)([Indexed(ds)[i] for i in range(j, min(j + 4, len(ds)))])
              for j in range(0, len(ds), 4)]
    for (enc, fam, index), (enc1, fam1, index1) in zip(batches, serial, strict=True):
        assert torch.equal(fam, fam1) and torch.equal(index, index1)
        assert torch.equal(decode_views(enc, "cpu"), decode_views(enc1, "cpu"))


def test_decode_setting_resolves() -> None:
    assert decode_on_device("device", "cpu", in_workers=False)
    assert decode_on_device("auto", "cuda", in_workers=False)
    assert not decode_on_device("auto", "cpu", in_workers=False)
    assert not decode_on_device("auto", "cuda", in_workers=True)
    assert not decode_on_device("cpu", "cuda", in_workers=False)
    with pytest.raises(UrrlError, match=r"data\.decode"):
        decode_on_device("device", "cpu", in_workers=True)


def test_pretrain_with_device_decoding(tree: Path, tmp_path: Path) -> None:
    def recipe(name: str) -> object:
        return load(ROOT / "recipes" / "quickstart.toml", [
            f"data.root='{tree}'", "data.dataset='imagefolder'", "data.image_size=64", "data.batch_size=8",
            "data.decode='device'", "model.backbone='resnet10'", "model.width=4", "pretext.queue_size=16",
            "pretext.head_dim=16", "pretext.bn_groups=2", "optim.epochs=2", "optim.log_every=1",
            "optim.checkpoint_every=1", "run.trackers=[]", f"run.output_dir='{tmp_path}'", f"run.name='{name}'",
        ])

    pretrain(recipe("full"))
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["decode"] == "device" and lines[0]["crops_from"] == "original"
    assert lines[-1]["stage"] == "pretrain-done" and all(np.isfinite(x["loss"]) for x in lines if "loss" in x)
    cut = recipe("cut")  # views seeded per batch: a resumed run reaches the same weights
    pretrain(cut, stop_after=1)
    pretrain(cut, resume=True)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_supervised_training_with_device_decoding(tree: Path, tmp_path: Path) -> None:
    """Fine-tuning and the linear probe (train_classifier) decode and cut on the device with data.decode =
    "device": the same boxes as the workers' PIL crops (bilinear within 2 grey levels), so the trained weights
    stay close to the CPU path's but not equal, and a resumed run reaches the same weights."""
    from urrlkit.data import from_config
    from urrlkit.finetune.train import train_classifier
    from urrlkit.models import Classifier, build_encoder

    def train(decode: str, name: str, stop_after: int | None = None, resume: bool = False) -> Classifier:
        r = load(ROOT / "recipes" / "quickstart.toml", [
            f"data.root='{tree}'", "data.dataset='imagefolder'", "data.image_size=96", f"data.decode='{decode}'",
            "linear_eval.epochs=3", "linear_eval.batch_size=8", "linear_eval.augment='crop_flip'",
            "optim.log_every=1", f"run.output_dir='{tmp_path}'"])
        torch.manual_seed(0)
        model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 2)
        return train_classifier(r, model, from_config(r.data, "train"), r.linear_eval, tmp_path / name / "ckpts",
                                None, title="linear", stop_after=stop_after, resume=resume)

    device, cpu = train("device", "dev"), train("cpu", "cpu")
    pairs = [(a, b) for a, b in zip(device.state_dict().values(), cpu.state_dict().values(), strict=True)
             if a.is_floating_point()]
    assert any(not torch.equal(a, b) for a, b in pairs)  # another path: decoded and resampled on the device

    def losses(name: str) -> list[float]:
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if "loss" in r]

    first, first_cpu = losses("dev")[0], losses("cpu")[0]  # the same images, within the resampling's 2 levels
    assert np.isfinite(losses("dev")).all() and first != first_cpu and abs(first - first_cpu) < 0.01 * first_cpu
    train("device", "cut", stop_after=1)
    resumed = train("device", "cut", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(device.state_dict().values(), resumed.state_dict().values(),
                                                   strict=True))


@pytest.mark.skipif(not GPU, reason="URRL_TEST_GPU=1 and CUDA needed")
def test_nvjpeg_matches_the_cpu_path(tree: Path) -> None:
    ds = files(tree)
    sampler = urrl_sampler(224)
    items = [Indexed(encoded_source(ds))[i] for i in range(len(ds))]
    enc, _, _ = EncodedViewsCollate(sampler, seed=1)(items)
    on_gpu, on_cpu = decode_views(enc, "cuda"), decode_views(enc, "cpu")
    assert on_gpu.device.type == "cuda"
    diff = (on_gpu.cpu().int() - on_cpu.int()).abs()
    print(f"nvJPEG vs libjpeg-turbo views at 224 px: max {int(diff.max())}, mean {float(diff.float().mean()):.3f}")
    assert diff.float().mean() < 2.0  # nvJPEG's IDCT / chroma upsampling differ slightly from libjpeg-turbo's


def test_supervised_crops_decoded_on_the_device_match_the_worker_crops(tree: Path) -> None:
    from urrlkit.augment.workers import SupervisedCropCollate, supervised_source

    ds = files(tree)
    source, collate, transform = supervised_source(ds, "crop_flip", 96, "original", seed=5, decode_on_device=True)
    enc, labels = collate([source[i] for i in range(len(ds))])
    ref_source, ref_collate, _ = supervised_source(ds, "crop_flip", 96, "original", seed=5)
    assert isinstance(ref_collate, SupervisedCropCollate)
    ref, ref_labels = ref_collate([ref_source[i] for i in range(len(ds))])
    ours = transform(enc.to("cpu"))
    assert ours.dtype == torch.float32 and torch.equal(labels, ref_labels)
    diff = (ours * 255 - ref.float()).abs()
    assert diff.max() <= 2.0001 and diff.mean() < 0.02


def test_a_jpeg_that_cannot_be_decoded_is_one_line_naming_it(tree: Path, tmp_path: Path) -> None:
    good = next((tree / "train" / "n00000001").glob("*.JPEG")).read_bytes()
    bad = tmp_path / "n00000001" / "cut_short.JPEG"
    bad.parent.mkdir()
    bad.write_bytes(good[:700] + bytes(range(256)) * 4)  # the header parses (size known), the scan data is junk
    ds = FileDataset([bad, *files(tree).files[:3]], [1, 0, 0, 0], ["a", "b"], size=64)
    items = [Indexed(encoded_source(ds))[i] for i in range(len(ds))]
    assert items[0][0].data is not None  # the worker could not tell: the device decode finds it
    enc, _, _ = EncodedViewsCollate(urrl_sampler(96), seed=0)(items)
    with pytest.raises(DataError, match=r"cut_short\.JPEG"):
        decode_views(enc, "cpu")


def test_padding_reads_chw_and_hwc_memory_alike() -> None:
    from urrlkit.augment.device_crops import _padded

    g = torch.Generator().manual_seed(0)
    chw = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((5, 7), (6, 3), (2, 2))]
    hwc = [im.permute(1, 2, 0).contiguous().permute(2, 0, 1) for im in chw]  # libjpeg-turbo's layout
    assert not hwc[0].is_contiguous()
    expect = torch.zeros(3, 3, 6, 7)
    for i, im in enumerate(chw):
        expect[i, :, :im.shape[1], :im.shape[2]] = im
    assert torch.equal(_padded(chw, 6, 7, torch.device("cpu")), expect)
    assert torch.equal(_padded(hwc, 6, 7, torch.device("cpu")), expect)
    assert torch.equal(_padded([chw[0], hwc[1], chw[2]], 6, 7, torch.device("cpu")), expect)


def test_three_bfloat16_parts_carry_the_weights_to_float32_accuracy(tree: Path) -> None:
    from urrlkit.augment.device_crops import bf16_parts

    # What the CUDA path computes (three bf16 products accumulated in float32), emulated on the CPU.
    w = filter_taps(torch.tensor([13, 40]), torch.tensor([301, 97]), 224, 500)  # shrink and enlarge
    parts = bf16_parts(w)
    assert all(p.dtype == torch.bfloat16 for p in parts)
    assert (sum(p.float() for p in parts) - w).abs().max() <= 2**-24
    x = load_image(files(tree).files[0], None)[:, :, :500].float()  # integers: exact in bfloat16
    x = torch.nn.functional.pad(x, (0, 500 - x.shape[-1])).reshape(1, -1, 500)
    assert torch.equal(x.to(torch.bfloat16).float(), x)
    exact = x.double() @ w.double().transpose(1, 2)[:1]
    split = sum(x @ p.float().transpose(1, 2)[:1] for p in parts)
    assert (split.double() - exact).abs().max() < 1e-3  # of 255 levels: rounding to uint8 is unaffected


@pytest.mark.skipif(not GPU, reason="URRL_TEST_GPU=1 and CUDA needed")
def test_cuda_resampling_matches_the_cpu(tree: Path) -> None:
    from urrlkit.augment import device_crops

    images = [load_image(p, None) for p in files(tree).files if not p.stem.startswith("z_")]
    g = torch.Generator().manual_seed(3)
    h = torch.tensor([im.shape[-2] for im in images]).repeat_interleave(2)
    w = torch.tensor([im.shape[-1] for im in images]).repeat_interleave(2)
    boxes = [x.view(-1, 2) for x in rrc_boxes(h, w, (0.08, 1.0), (3 / 4, 4 / 3), g)]
    flip = (torch.rand(h.shape[0], generator=g) < 0.5).view(-1, 2)
    on_cpu = resample_boxes(images, *boxes, flip, size=224).int()
    on_gpu = resample_boxes([im.cuda() for im in images], *(x.cuda() for x in boxes), flip.cuda(), size=224)
    diff = (on_gpu.cpu().int() - on_cpu).abs()
    print(f"CUDA vs CPU resampling (bf16 x3 GEMM: {device_crops._BF16_GEMM[0]}): max {int(diff.max())}, "
          f"values differing {float((diff > 0).float().mean()):.2e}")
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
