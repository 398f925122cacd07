"""Crops of original JPEGs decoded on the training device (``data.decode = "device"``).

The DataLoader workers only read each file's bytes and its header size (PIL's ``Image.open`` is lazy: it parses
the header, decodes nothing) and draw every view's family and box on that size exactly as the CPU path does
(``crops.plan_views``, same generator, same order, so the same boxes for the same seed). The main process then
decodes the batch's JPEGs in one call (``torchvision.io.decode_jpeg(list, device=...)``: nvJPEG on CUDA, libjpeg-
turbo on the CPU) and cuts every box and resizes it to its view group's size on the device (each JPEG decoded
once for all its views, augment/multiview.py).

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
from urrlkit.augment.multiview import ViewSampler
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
    """What a worker sends for B images and their N = views · B views (view-major rows, as ``plan_views``; with
    view groups, augment/multiview.py, group-major: the rows of group j's views follow those of group j − 1).

    ``groups``: (views, size) of each view group; ``sizes``: (B, 2) header heights and widths; ``data``/``offsets``:
    the JPEG bytes of the images ``jpeg`` (indices into the batch), concatenated (one tensor crosses the process
    boundary, not one per file); ``top, left, height, width, flip``: every view's box (N,); ``cpu_rows``: the rows
    of the views already cut in the worker, ``cpu_views`` those views, one uint8 (n_j, 3, s_j, s_j) batch per group
    (its rows in ``cpu_rows`` order); ``photo_seed``: the seed of the photometric stage's generator, drawn from the
    batch's generator, so the views depend only on run.seed and the batch's images, not on when or on which stream
    the batch is processed.
    """

    groups: tuple[tuple[int, int], ...]
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
    cpu_views: list[Tensor]
    photo_seed: int
    device: str = "cpu"

    @property
    def views(self) -> int:
        return sum(n for n, _ in self.groups)

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

    def __init__(self, sampler: FamilySampler | ViewSampler, seed: int) -> None:
        self.sampler = ViewSampler.of(sampler)
        self.seed = seed
        self.specs = self.sampler.crop_specs()

    def __call__(self, items: Sequence[tuple[Encoded, int]]) -> tuple[EncodedBatch, Tensor, Tensor]:
        index = torch.tensor([i for _, i in items], dtype=torch.int64)
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        b, sampler = len(items), self.sampler
        fam = sampler.draw_families(sampler.views * b, g)
        batch = encode_groups([e for e, _ in items], sampler.split(fam), self.specs, sampler.sizes, g)
        return batch, fam.view(sampler.views, b), index


def encode_groups(enc: Sequence[Encoded], fams: Sequence[Tensor], specs: Sequence[Sequence[CropSpec]],
                  sizes: Sequence[int], g: torch.Generator) -> EncodedBatch:
    """The ``EncodedBatch`` of B images whose views drew their families, group j's ``fams[j]`` (count_j · B,
    view-major), cut with ``specs[j]`` to ``sizes[j]``: boxes from ``g`` group by group (``plan_views``, as
    ``crops.crop_groups`` draws them), then the photometric seed; the fallback items' views cut here, on the CPU."""
    b = len(enc)
    heights = torch.tensor([e.height for e in enc], dtype=torch.int64)
    widths = torch.tensor([e.width for e in enc], dtype=torch.int64)
    plans = [plan_views(heights, widths, fam, sp, s, g) for fam, sp, s in zip(fams, specs, sizes, strict=True)]
    photo_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    not_box = {int(p.src[r]) for p in plans for r, k in enumerate(p.kinds) if k != "rrc"}
    on_cpu = {i for i, e in enumerate(enc) if e.data is None or i in not_box}
    jpeg = [i for i in range(b) if i not in on_cpu]
    counts = [f.numel() // b for f in fams]
    pils: list[Image.Image | None] = [_pil(enc[i]) if i in on_cpu else None for i in range(b)]
    cpu_rows, cpu_views, start = [], [], 0
    for plan, n, s in zip(plans, counts, sizes, strict=True):
        rows = [r for r in range(n * b) if r % b in on_cpu]
        cut = new_batch((len(rows), 3, s, s))
        if rows:
            cut_rows(pils, plan, rows, s, cut.numpy())  # type: ignore[arg-type]
        cpu_rows += [start + r for r in rows]
        cpu_views.append(cut)
        start += n * b
    blobs = [enc[i].data for i in jpeg]
    nbytes = torch.tensor([0] + [d.numel() for d in blobs], dtype=torch.int64)  # type: ignore[union-attr]
    data = new_batch((int(nbytes.sum()),))
    if blobs:
        torch.cat(blobs, out=data)  # type: ignore[arg-type]
    top, left, height, width, flip = (torch.cat([getattr(p, k) for p in plans]) if len(plans) > 1 else
                                      getattr(plans[0], k) for k in ("top", "left", "height", "width", "flip"))
    return EncodedBatch(tuple(zip(counts, sizes, strict=True)), [e.path for e in enc],
                        torch.stack([heights, widths], 1), torch.tensor(jpeg, dtype=torch.int64), data,
                        nbytes.cumsum(0), top, left, height, width, flip, torch.tensor(cpu_rows, dtype=torch.int64),
                        cpu_views, photo_seed)


def _pil(e: Encoded) -> Image.Image:
    if e.image is not None:
        return Image.fromarray(e.image.permute(1, 2, 0).contiguous().numpy())
    with Image.open(io.BytesIO(e.data.numpy().tobytes())) as img:  # type: ignore[union-attr]
        return img.convert("RGB")


def decode_views(batch: EncodedBatch, device: torch.device | str | None = None, chunk: int = 64) -> Tensor:
    """The views of a batch of one view group, uint8 (N, 3, s, s) on ``device`` (default: where ``batch.to`` sent
    it); ``decode_groups`` for several."""
    if len(batch.groups) != 1:
        raise ValueError(f"the batch holds {len(batch.groups)} view groups; decode them with decode_groups")
    return decode_groups(batch, device, chunk)[0]


def decode_groups(batch: EncodedBatch, device: torch.device | str | None = None, chunk: int = 64) -> list[Tensor]:
    """The batch's views, one uint8 (count·B, 3, s, s) batch per view group on ``device`` (default: where
    ``batch.to`` sent it): its JPEGs decoded there once, in one call, each box cut and resized to its group's size
    (``resample_padded``, ``chunk`` images at a time, padded once for all groups), with the views the worker cut
    put in place."""
    device = torch.device(batch.device if device is None else device)
    b = len(batch.paths)
    starts = [sum(n for n, _ in batch.groups[:j]) for j in range(len(batch.groups))]
    outs = [torch.empty((n * b, 3, s, s), dtype=torch.uint8, device=device) for n, s in batch.groups]
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
        # Per group, (images, views): the group's row of view k of each image, and every view's box.
        rows = [torch.arange(n)[None, :] * b + batch.jpeg[order][:, None] for n, _ in batch.groups]
        fields = (batch.top, batch.left, batch.height, batch.width, batch.flip)
        boxes = [[t[(r + v0 * b).reshape(-1)].view(len(jpeg), -1).to(device) for t in fields]
                 for r, v0 in zip(rows, starts, strict=True)]
        for c in range(0, len(jpeg), chunk):
            part = slice(c, c + chunk)
            hmax = max(int(im.shape[-2]) for im in images[part])
            wmax = max(int(im.shape[-1]) for im in images[part])
            x = _padded(images[part], hmax, wmax, device)
            for out, r, box, (_, s) in zip(outs, rows, boxes, batch.groups, strict=True):
                top, left, height, width, flip = (t[part] for t in box)
                cuts = resample_padded(x, top, left, height, width, flip, size=s)
                out.index_copy_(0, r[part].reshape(-1).to(device), cuts.flatten(0, 1))
    cpu_rows = batch.cpu_rows
    for out, v0, (n, _), done in zip(outs, starts, batch.groups, batch.cpu_views, strict=True):
        mine = cpu_rows[(cpu_rows >= v0 * b) & (cpu_rows < (v0 + n) * b)] - v0 * b  # ascending, as cut
        if mine.numel():
            out.index_copy_(0, mine.to(device), done.to(device, non_blocking=True))
    return outs


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
    hmax = max(int(im.shape[-2]) for im in images)
    wmax = max(int(im.shape[-1]) for im in images)
    return resample_padded(_padded(images, hmax, wmax, top.device), top, left, height, width, flip, size)


def resample_padded(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, flip: Tensor,
                    size: int) -> Tensor:
    """``resample_boxes`` of images already padded into float32 x (n, 3, hmax, wmax) (``_padded``)."""
    n, v = top.shape
    hmax, wmax = x.shape[-2:]
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
