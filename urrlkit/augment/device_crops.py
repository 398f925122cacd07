"""Crops of original JPEGs decoded on the training device (``data.decode = "device"``).

The DataLoader workers only read each file's bytes and its header size (PIL's ``Image.open`` is lazy: it parses
the header, decodes nothing) and draw every view's family and box on that size exactly as the CPU path does
(``crops.plan_views``, same generator, same order, so the same boxes for the same seed). The main process then
decodes the batch's JPEGs in one call (``torchvision.io.decode_jpeg(list, device=...)``: nvJPEG on CUDA, libjpeg-
turbo on the CPU) and cuts every box and resizes it to image_size on the device.

The resize reproduces PIL's ``img.crop(box).resize((s, s), BILINEAR)`` (what torchvision's RandomResizedCrop
does to PIL images): PIL's separable triangle filter, widened by the scale when shrinking (antialiasing), taps
limited to the box, a horizontal pass rounded to uint8, then a vertical pass. Written as two batched matrix
products per chunk of images — one (s × W) and one (s × H) weight matrix per view, zero outside its box — it is
a handful of launches per batch whatever the number of views, where a per-view ``interpolate(antialias=True)``
or ``roi_align`` costs launches per view (the input path is host-bound on a GPU) and ``roi_align`` averages
bilinear samples rather than applying PIL's filter.

Per item, what nvJPEG cannot or should not take is decoded and cut in the worker, the CPU path exactly: files that
are not JPEG (PNG, ...), JPEGs that are not 3-channel YCbCr/RGB (CMYK, grayscale), and images with a view whose
crop is not a box (``pad``, ``center`` kinds). EXIF orientation is ignored on both paths, as PIL's ``Image.open``
+ ``convert("RGB")`` (torchvision's ImageFolder loader) ignores it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset, Subset

from urrlkit.augment.crops import CropSpec, batch_seed, cut, cut_rows, new_batch, plan_views, to_pil
from urrlkit.augment.sampler import FamilySampler
from urrlkit.data.datasets import FileDataset, pil_to_uint8
from urrlkit.errors import DataError, UrrlError

_BAD_IMAGE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Encoded:
    """One image as a worker hands it on: the JPEG bytes (``data``, 1-D uint8) for the device, or the decoded
    uint8 CHW ``image`` where the device decoder is not used; the header size either way."""

    path: str
    height: int
    width: int
    data: Tensor | None = None
    image: Tensor | None = None


def read_encoded(path: Path) -> Encoded:
    """The file's bytes and header size; decoded here (PIL, as ``load_image``) unless it is a 3-channel JPEG."""
    try:
        raw = Path(path).read_bytes()
        with Image.open(io.BytesIO(raw)) as img:  # lazy: the header only
            w, h = img.size
            if img.format == "JPEG" and img.mode == "RGB":
                return Encoded(str(path), h, w, data=torch.frombuffer(bytearray(raw), dtype=torch.uint8))
            return Encoded(str(path), h, w, image=pil_to_uint8(img, None))
    except _BAD_IMAGE as exc:
        raise DataError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None


class EncodedFiles(Dataset):
    """A file-backed data set's images as ``Encoded`` items, with their labels: (Encoded, label)."""

    def __init__(self, files: Sequence[Path], labels: Tensor) -> None:
        self.files = list(files)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Encoded, int]:
        return read_encoded(self.files[i]), int(self.labels[i])


def encoded_source(ds: Dataset) -> Dataset | None:
    """``ds`` (same order, subset and labels) yielding ``Encoded`` items; None unless it reads image files."""
    if isinstance(ds, Subset):
        inner = encoded_source(ds.dataset)
        return None if inner is None else Subset(inner, ds.indices)
    if isinstance(ds, FileDataset):
        return EncodedFiles(ds.files, ds.labels)
    return None


@dataclass
class EncodedBatch:
    """What a worker sends for B images and their N = views · B views (view-major rows, as ``plan_views``).

    ``sizes``: (B, 2) header heights and widths; ``data``/``offsets``: the JPEG bytes of the images ``jpeg``
    (indices into the batch), concatenated (one tensor crosses the process boundary, not one per file); ``top,
    left, height, width, flip``: every view's box (N,); ``cpu_rows``/``cpu_views``: the views already cut in the
    worker (uint8 (n, 3, s, s)); ``photo_seed``: the seed of the photometric stage's generator, drawn from the
    batch's generator, so the views depend only on run.seed and the batch's images, not on when or on which
    stream the batch is processed.
    """

    size: int
    views: int
    paths: list[str]
    sizes: Tensor
    jpeg: Tensor
    data: Tensor
    offsets: Tensor
    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor
    cpu_rows: Tensor
    cpu_views: Tensor
    photo_seed: int
    device: str = "cpu"

    @property
    def shape(self) -> torch.Size:
        """(B,): the training loop counts a batch's images by its first element's leading size."""
        return torch.Size([len(self.paths)])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EncodedBatch:
        """The same batch, to be decoded on ``device`` (``decode_views``' default): the bytes stay in host memory,
        where nvJPEG reads them. (Accelerate's prepared loader calls ``.to`` on every batch.)"""
        return replace(self, device=str(device))


class EncodedViewsCollate:
    """``collate_fn`` for (Encoded, index) items: families (Eq. 2) and boxes drawn as ``OriginalViewsCollate``
    draws them, from the same per-batch generator; returns ``(EncodedBatch, families (views, B), index)``."""

    def __init__(self, sampler: FamilySampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.specs = sampler.crop_specs()

    def __call__(self, items: Sequence[tuple[Encoded, int]]) -> tuple[EncodedBatch, Tensor, Tensor]:
        index = torch.tensor([i for _, i in items], dtype=torch.int64)
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        b, v = len(items), self.sampler.views
        fam = self.sampler.draw_families(v * b, g)
        batch = encode_batch([e for e, _ in items], fam, self.specs, self.sampler.image_size, v, g)
        return batch, fam.view(v, b), index


def encode_batch(enc: Sequence[Encoded], fam: Tensor, specs: Sequence[CropSpec], size: int, views: int,
                 g: torch.Generator) -> EncodedBatch:
    """The ``EncodedBatch`` of B images whose views ``fam`` (views · B, view-major) drew their families: boxes
    from ``g`` (``plan_views``, as ``crop_views`` draws them), then the photometric seed; the fallback items'
    views cut here, on the CPU."""
    b, v, s = len(enc), views, size
    heights = torch.tensor([e.height for e in enc], dtype=torch.int64)
    widths = torch.tensor([e.width for e in enc], dtype=torch.int64)
    plan = plan_views(heights, widths, fam, specs, s, g)
    photo_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    not_box = {int(plan.src[r]) for r, k in enumerate(plan.kinds) if k != "rrc"}
    on_cpu = {i for i, e in enumerate(enc) if e.data is None or i in not_box}
    jpeg = [i for i in range(b) if i not in on_cpu]
    cpu_rows = [r for r in range(v * b) if r % b in on_cpu]
    cpu_views = new_batch((len(cpu_rows), 3, s, s))
    if cpu_rows:
        pils: list[Image.Image | None] = [_pil(enc[i]) if i in on_cpu else None for i in range(b)]
        cut_rows(pils, plan, cpu_rows, s, cpu_views.numpy())  # type: ignore[arg-type]
    blobs = [enc[i].data for i in jpeg]
    sizes = torch.tensor([0] + [d.numel() for d in blobs], dtype=torch.int64)  # type: ignore[union-attr]
    data = new_batch((int(sizes.sum()),))
    if blobs:
        torch.cat(blobs, out=data)  # type: ignore[arg-type]
    return EncodedBatch(s, v, [e.path for e in enc], torch.stack([heights, widths], 1),
                        torch.tensor(jpeg, dtype=torch.int64), data, sizes.cumsum(0),
                        plan.top, plan.left, plan.height, plan.width, plan.flip,
                        torch.tensor(cpu_rows, dtype=torch.int64), cpu_views, photo_seed)


def _pil(e: Encoded) -> Image.Image:
    if e.image is not None:
        return Image.fromarray(e.image.permute(1, 2, 0).contiguous().numpy())
    with Image.open(io.BytesIO(e.data.numpy().tobytes())) as img:  # type: ignore[union-attr]
        return img.convert("RGB")


def decode_views(batch: EncodedBatch, device: torch.device | str | None = None, chunk: int = 64) -> Tensor:
    """The batch's views, uint8 (N, 3, s, s) on ``device`` (default: where ``batch.to`` sent it): its JPEGs
    decoded there in one call, each box cut and resized (``resample_boxes``, ``chunk`` images at a time), with
    the views the worker cut put in place."""
    device = torch.device(batch.device if device is None else device)
    s, v, b = batch.size, batch.views, len(batch.paths)
    out = torch.empty((v * b, 3, s, s), dtype=torch.uint8, device=device)
    jpeg = batch.jpeg.tolist()
    if jpeg:
        o = batch.offsets.tolist()
        blobs = [batch.data[o[j]:o[j + 1]] for j in range(len(jpeg))]
        images = _decode(blobs, [batch.paths[i] for i in jpeg], device)
        header = batch.sizes.tolist()
        for i, im in zip(jpeg, images, strict=True):  # the boxes were drawn on the header's size
            if list(im.shape[-2:]) != header[i]:
                raise DataError(f"{batch.paths[i]}: decoded to {tuple(im.shape[-2:])} pixels, but its header says "
                                f"{tuple(header[i])}")
        # Chunks of similar sizes pad less (the products run over the chunk's largest height and width).
        order = sorted(range(len(jpeg)), key=lambda j: (int(images[j].shape[-2]), int(images[j].shape[-1])))
        images = [images[j] for j in order]
        rows = torch.arange(v)[None, :] * b + batch.jpeg[order][:, None]  # (images, views): row of view k of image
        flat = rows.reshape(-1)
        boxes = [t[flat].view(len(jpeg), v).to(device) for t in (batch.top, batch.left, batch.height, batch.width,
                                                                  batch.flip)]
        for c in range(0, len(jpeg), chunk):
            part = slice(c, c + chunk)
            top, left, height, width, flip = (x[part] for x in boxes)
            cuts = resample_boxes(images[part], top, left, height, width, flip, size=s)
            out.index_copy_(0, rows[part].reshape(-1).to(device), cuts.flatten(0, 1))
    if batch.cpu_rows.numel():
        out.index_copy_(0, batch.cpu_rows.to(device), batch.cpu_views.to(device, non_blocking=True))
    return out


def _decode(blobs: list[Tensor], paths: list[str], device: torch.device) -> list[Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    def one(blob: Tensor, path: str) -> Tensor:
        # casts: decode_jpeg is annotated Tensor | list[Tensor] for both call forms; one tensor in, one out
        try:
            return cast(Tensor, decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # a file nvJPEG refuses (an odd JPEG variant): libjpeg-turbo on the CPU
            try:
                return cast(Tensor, decode_jpeg(blob, mode=ImageReadMode.RGB)).to(device)
            except RuntimeError as exc:
                raise DataError(f"{path}: cannot decode JPEG ({exc})") from None

    try:
        return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=False))
    except RuntimeError:  # the batched call returns nothing on an error: file by file
        return [one(blob, path) for blob, path in zip(blobs, paths, strict=True)]


def filter_taps(start: Tensor, length: Tensor, size: int, extent: int, flip: Tensor | None = None) -> Tensor:
    """PIL's bilinear resampling weights (n, size, extent) for n boxes [start, start + length) of an axis of
    ``extent`` pixels, resized to ``size``: output pixel o is centred at start + (o + ½)·length/size, its taps
    weigh max(0, 1 − |x + ½ − centre| / max(1, length/size)), limited to the box and normalised (PIL's
    ``precompute_coeffs`` with the triangle filter, support 1). ``flip`` mirrors the output axis."""
    dev = start.device
    st = start.to(torch.float64)[:, None, None]
    ln = length.to(torch.float64)[:, None, None]
    scale = ln / size
    o = torch.arange(size, dtype=torch.float64, device=dev)[None, :, None]
    x = torch.arange(extent, dtype=torch.float64, device=dev)[None, None, :]
    w = (1 - (x + 0.5 - (st + (o + 0.5) * scale)).abs() / scale.clamp(min=1.0)).clamp_(min=0)
    w = w * ((x >= st) & (x < st + ln))
    w = w / w.sum(-1, keepdim=True)  # never 0: the tap nearest the centre lies in the box
    if flip is not None:
        w = torch.where(flip.to(dev)[:, None, None], w.flip(1), w)
    return w.to(torch.float32)


def _padded(images: Sequence[Tensor], hmax: int, wmax: int, device: torch.device) -> Tensor:
    """float32 (n, 3, hmax, wmax): the uint8 CHW images zero-padded, in a fixed number of launches (one
    concatenation, one gather) rather than one copy per image. Images may be CHW-contiguous (nvJPEG) or HWC
    memory viewed as CHW (libjpeg-turbo on the CPU): each is flattened in its own memory order, uncopied, and
    gathered by its strides. The padding is never read: every tap outside a box weighs zero."""
    parts, meta = [], []
    for im in images:
        h, w = int(im.shape[-2]), int(im.shape[-1])
        if not im.is_contiguous() and im.permute(1, 2, 0).is_contiguous():
            parts.append(im.permute(1, 2, 0).reshape(-1))
            meta.append((h, w, 1, 3 * w, 3))  # (h, w, channel, row, column strides)
        else:
            parts.append(im.reshape(-1))
            meta.append((h, w, h * w, w, 1))
    flat = torch.cat([*parts, images[0].new_zeros(1)])  # the last element: the padding value
    m = torch.tensor(meta, dtype=torch.int64).to(device)[:, :, None, None, None]
    hs, ws, sc, sy, sx = m.unbind(1)
    offset = torch.cumsum(hs * ws * 3, 0) - hs * ws * 3
    c = torch.arange(3, device=device)[None, :, None, None]
    y = torch.arange(hmax, device=device)[None, None, :, None]
    x = torch.arange(wmax, device=device)[None, None, None, :]
    idx = torch.where((y < hs) & (x < ws), offset + c * sc + y * sy + x * sx, flat.numel() - 1)
    return flat.take(idx).float()


def resample_boxes(images: Sequence[Tensor], top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                   flip: Tensor, size: int) -> Tensor:
    """uint8 (n, V, 3, size, size): box (top, left, height, width)[i, k] of uint8 CHW ``images[i]`` resized to
    size (PIL bilinear, ``filter_taps``), mirrored where flip[i, k]. Two batched matmuls: the horizontal pass,
    rounded to uint8 values as PIL's intermediate image is, then the vertical pass."""
    n, v = top.shape
    dev = top.device
    hmax = max(int(im.shape[-2]) for im in images)
    wmax = max(int(im.shape[-1]) for im in images)
    x = _padded(images, hmax, wmax, dev)
    wx = filter_taps(left.reshape(-1), width.reshape(-1), size, wmax, flip.reshape(-1)).view(n, v * size, wmax)
    rows = _bmm(x.view(n, 3 * hmax, wmax), wx.transpose(1, 2), weights=1).round_().clamp_(0, 255)  # (n, 3H, V·s)
    rows = rows.view(n, 3, hmax, v, size).permute(0, 3, 2, 1, 4).reshape(n * v, hmax, 3 * size)  # (n·V, H, 3·s)
    wy = filter_taps(top.reshape(-1), height.reshape(-1), size, hmax)  # (n·V, s, H)
    out = _bmm(wy, rows, weights=0).round_().clamp_(0, 255).to(torch.uint8)  # (n·V, s, 3·s)
    return out.view(n, v, size, 3, size).permute(0, 1, 3, 2, 4)


_BF16_GEMM = [True]  # switched off for the process if this torch's bmm has no float32 out_dtype on the device


def bf16_parts(w: Tensor, terms: int = 3) -> list[Tensor]:
    """float32 w as a sum of ``terms`` bfloat16 tensors (8 significant bits each: 3 terms carry float32's 24)."""
    parts, rest = [], w
    for _ in range(terms):
        parts.append(rest.to(torch.bfloat16))
        rest = rest - parts[-1].float()
    return parts


def _bmm(a: Tensor, b: Tensor, weights: int) -> Tensor:
    """float32 batched a @ b, operand ``weights`` (0: a, 1: b) the filter weights, the other integers 0–255. On
    CUDA the weights go as three bfloat16 parts (``bf16_parts``) and the integers exactly in bfloat16: three bf16
    tensor-core products accumulated in float32 (``bmm(..., out_dtype=float32)``) give float32's accuracy at a
    fraction of a float32 GEMM's cost (≈ 0.4 TFLOP per 512 views at ImageNet sizes). Elsewhere: float32."""
    if a.is_cuda and _BF16_GEMM[0]:
        try:
            w, other = (a, b) if weights == 0 else (b, a)
            other = other.to(torch.bfloat16)
            out: Tensor | None = None
            for part in bf16_parts(w):
                pair = (part, other) if weights == 0 else (other, part)
                term = torch.bmm(*pair, out_dtype=torch.float32)
                out = term if out is None else out.add_(term)
            return out  # type: ignore[return-value]
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, TypeError, NotImplementedError):  # older torch: no out_dtype for bmm
            _BF16_GEMM[0] = False
    return torch.bmm(a, b)


def cpu_reference(images: Sequence[Tensor], top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                  flip: Tensor, size: int) -> Tensor:
    """What the CPU path (``crops.cut``, PIL) makes of the same boxes, same layout as ``resample_boxes``."""
    out = np.zeros((*top.shape, 3, size, size), dtype=np.uint8)
    for i, im in enumerate(images):
        pil = to_pil(im.cpu())
        for k in range(top.shape[1]):
            out[i, k] = cut(pil, "rrc", int(top[i, k]), int(left[i, k]), int(height[i, k]), int(width[i, k]),
                            bool(flip[i, k]), size).transpose(2, 0, 1)
    return torch.from_numpy(out)


def decode_on_device(decode: str, device_type: str, in_workers: bool) -> bool:
    """data.decode resolved: "auto" decodes on the device for a CUDA run whose images are cut there (pretraining
    with data.augment_in = "device", and the supervised stages, whose workers only draw the boxes)."""
    if decode == "device" and in_workers:
        raise UrrlError("data.decode = 'device' needs the views made on the device; set data.augment_in = 'device'")
    return decode == "device" or (decode == "auto" and device_type == "cuda" and not in_workers)
