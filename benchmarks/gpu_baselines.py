"""Other batched augmentation libraries on the same device and batch as urrlkit's sampler, and the JPEG → views
path, for benchmarks/augment.py (``--baselines``, ``--jpeg DIR``). Each entry says what it covers.

- ``torchvision_v2_batch``: torchvision.transforms.v2 on a whole (B, 3, H, W) uint8 batch on the device, half the
  batch through MoCo v2's pipeline, half through RandomResizedCrop + flip + ``v2.AugMix(all_ops=True)``. v2 draws
  ONE set of random parameters per call, so every image of a half gets the same crop, jitter, blur and AugMix
  chain: much less work than per-sample randomness, not the paper's augmentation.
- ``torchaug``: torchaug's transforms with ``batch_transform=True`` (per-sample randomness on batches for the
  colour ops; its RandomResizedCrop draws per chunk of the batch, ``num_chunks``), same two halves; AugMix is
  torchaug's (batch_transform is forced on there). Skipped when torchaug is not installed.
- ``dali``: NVIDIA DALI from the JPEG files (``--jpeg``): nvJPEG decode, two RandomResizedCrop(0.2–1) views,
  colour twist, random grayscale via saturation 0, Gaussian blur, flip, per sample. MoCo v2 only: DALI has no
  AugMix, and its jitter/blur are applied to every view (no p = 0.8 / 0.5 gates). Skipped unless DALI and CUDA.
- ``urrlkit_jpeg``: urrlkit's device-decoding path (augment/device_crops.py) from the same files: the worker side
  (bytes, header, Eq. 2 families, boxes) timed in this process, the device side (decode_jpeg, box resampling,
  the URRL photometric stages) timed apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from urrlkit.augment import build_sampler
from urrlkit.augment.device_crops import EncodedFiles, EncodedViewsCollate, decode_views
from urrlkit.config.pretext import method_settings


def urrl_families() -> list:
    """URRL's weighted families (paper Eq. 2, p = 0.5) as the default method expands them."""
    return method_settings({"method": "moco_v2", "p": 0.5}).family_weights()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    """Seconds per call after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / reps


def torchvision_v2(size: int) -> tuple[Callable, Callable]:
    from torchvision.transforms import v2

    to_float = v2.ToDtype(torch.float32, scale=True)
    moco = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
        v2.RandomHorizontalFlip(), to_float,
    ])
    augmix = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                         v2.AugMix(all_ops=True, severity=1), to_float])
    return moco, augmix


def torchaug_pipelines(size: int) -> tuple[Callable, Callable] | None:
    try:
        from torchaug import transforms as ta
    except Exception:  # not installed, or built against another torchvision
        return None
    moco = ta.Compose([
        ta.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True, num_chunks=8, batch_transform=True),
        ta.RandomColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, batch_transform=True),
        ta.RandomGrayscale(p=0.2, batch_transform=True),
        ta.RandomGaussianBlur(23, sigma=(0.1, 2.0), p=0.5, batch_transform=True),
        ta.RandomHorizontalFlip(batch_transform=True),
        ta.ToDtype(torch.float32, scale=True),
    ])
    augmix = ta.Compose([
        ta.RandomResizedCrop(size, antialias=True, num_chunks=8, batch_transform=True),
        ta.RandomHorizontalFlip(batch_transform=True),
        ta.AugMix(all_ops=True, severity=1),
        ta.ToDtype(torch.float32, scale=True),
    ])
    return moco, augmix


def halves_views_per_s(pipes: tuple[Callable, Callable], x: torch.Tensor, reps: int) -> float:
    """Two views of every image of x, half the batch through each pipeline (URRL's p = 0.5 in expectation)."""
    moco, augmix = pipes
    h = x.shape[0] // 2

    def call() -> None:
        for _ in range(2):
            moco(x[:h])
            augmix(x[h:])

    return 2 * x.shape[0] / _timed(call, reps, x.device)


def compare(x: torch.Tensor, size: int, reps: int) -> dict:
    """Views/s of the other libraries on the stored batch x (uint8, on the device urrlkit ran on)."""
    out: dict[str, dict] = {}
    out["torchvision_v2_batch"] = {"views_per_s": round(halves_views_per_s(torchvision_v2(size), x, reps), 1),
                                   "randomness": "per batch (one draw per call)"}
    ta = torchaug_pipelines(size)
    if ta is None:
        out["torchaug"] = {"skipped": "torchaug not installed"}
    else:
        try:
            out["torchaug"] = {"views_per_s": round(halves_views_per_s(ta, x, reps), 1),
                               "randomness": "per sample (colour, blur, flip), crops per chunk of B/8"}
        except Exception as exc:  # an API change must not sink the other numbers
            out["torchaug"] = {"error": f"{exc.__class__.__name__}: {exc}"[:300]}
    return out


def jpeg_files(root: Path, n: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not files:
        raise SystemExit(f"{root}: no JPEG files (make some with benchmarks/jpeg_tree.py)")
    return (files * -(-n // len(files)))[:n]


def urrlkit_jpeg(files: list[Path], size: int, batch: int, reps: int, device: torch.device) -> dict:
    """urrlkit's device-decoding path: worker-side work per batch (this process, one thread) and device-side
    views/s (decode + box resampling + URRL photometric stages, p = 0.5, 2 views)."""
    sampler = build_sampler(urrl_families(), image_size=size, views=2)
    ds = EncodedFiles(files, torch.zeros(len(files), dtype=torch.int64))
    collate = EncodedViewsCollate(sampler, seed=0)
    n_batches = max(1, len(files) // batch)
    start = time.perf_counter()
    batches = [collate([(ds[i][0], i) for i in range(b * batch, (b + 1) * batch)]) for b in range(n_batches)]
    worker_s = (time.perf_counter() - start) / n_batches
    state = {"k": 0}

    def device_side() -> None:
        enc, fam, _ = batches[state["k"] % len(batches)]
        state["k"] += 1
        gen = torch.Generator(device).manual_seed(enc.photo_seed)
        sampler.photometric(decode_views(enc, device), fam.to(device), gen)

    def decode_only() -> None:
        decode_views(batches[0][0], device)

    per_call = _timed(device_side, reps, device)
    decode = _timed(decode_only, reps, device)
    views = 2 * batch
    return {"device_views_per_s": round(views / per_call, 1), "decode_and_cut_views_per_s": round(views / decode, 1),
            "worker_ms_per_batch_one_core": round(worker_s * 1e3, 2),
            "worker_views_per_s_per_core": round(views / worker_s, 1), "batch": batch,
            "covers": "JPEG bytes → decode → boxes on the original (PIL-exact bilinear) → URRL p = 0.5, 2 views, "
                      "per-sample randomness"}


def dali(files: list[Path], size: int, batch: int, reps: int) -> dict:
    """DALI MoCo v2-like two views from the files (see the module docstring for what it leaves out)."""
    try:
        from nvidia.dali import fn, pipeline_def, types
    except Exception:
        return {"skipped": "nvidia-dali not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "DALI's nvJPEG pipeline needs CUDA"}
    try:
        @pipeline_def(batch_size=batch, num_threads=8, device_id=0, seed=0)
        def pipe():
            jpegs, _ = fn.readers.file(files=[str(f) for f in files], random_shuffle=True)
            images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)
            views = []
            for _ in range(2):
                v = fn.random_resized_crop(images, size=[size, size], random_area=[0.2, 1.0])
                v = fn.color_twist(v, brightness=fn.random.uniform(range=[0.6, 1.4]),
                                   contrast=fn.random.uniform(range=[0.6, 1.4]),
                                   saturation=fn.random.uniform(range=[0.6, 1.4]),
                                   hue=fn.random.uniform(range=[-36.0, 36.0]))
                v = fn.hsv(v, saturation=fn.cast(fn.random.coin_flip(probability=0.8), dtype=types.FLOAT))
                v = fn.gaussian_blur(v, window_size=23, sigma=fn.random.uniform(range=[0.1, 2.0]))
                views.append(fn.crop_mirror_normalize(v, dtype=types.FLOAT, output_layout="CHW",
                                                      mirror=fn.random.coin_flip(), mean=[0.0] * 3,
                                                      std=[255.0] * 3))
            return tuple(views)

        p = pipe()
        p.build()
        seconds = _timed(p.run, reps, torch.device("cuda"))
        return {"views_per_s": round(2 * batch / seconds, 1), "batch": batch,
                "covers": "JPEG → two MoCo v2-like views per sample (no AugMix; jitter and blur on every view)"}
    except Exception as exc:
        return {"error": f"{exc.__class__.__name__}: {exc}"[:300]}
