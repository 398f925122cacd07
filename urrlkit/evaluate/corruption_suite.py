"""The corruption suites: error, mCE (ImageNet-C) and RMS calibration on an official "-C" set read from disk or
on the recipe's test split corrupted in memory ("generated"), every image framed as the clean ones are."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from urrlkit.config import Recipe
from urrlkit.errors import UrrlError
from urrlkit.evaluate import metrics
from urrlkit.evaluate.corruptions import CHUNK, check_names, corrupt
from urrlkit.evaluate.corruptions import official as off
from urrlkit.evaluate.corruptions.framing import corrupt_framed
from urrlkit.evaluate.inputs import Batch, predict_batches, take_subset
from urrlkit.results import CorruptionResult, CorruptionScore


def corruption_batches(
    recipe: Recipe,
    bench: str,
    name: str,
    severity: int,
    test: Batch | None,
    classes: list[str] | None,
    size: int,
    num_classes: int | None = None,
) -> Iterator[Batch]:
    """uint8 batches of one corruption at one severity: generated from `test`, or read from eval.corruptions.root
    (a CIFAR-C folder's labels checked against `num_classes`, the model's outputs, when given)."""
    ce = recipe.eval.corruptions
    if bench == "generated":
        assert test is not None
        x, y = test
        for i in range(0, x.shape[0], CHUNK):
            fn = functools.partial(corrupt, name=name, severity=severity, seed=recipe.run.seed, start=i)
            yield corrupt_framed(x[i : i + CHUNK], size, fn), y[i : i + CHUNK]
        return
    root = Path(ce.root)  # type: ignore[arg-type]  # checked before
    if off.detect_layout(root) == "npy":
        yield from off.iter_npy(root, name, severity, recipe.eval.batch_size, ce.limit, num_classes)
    else:
        # read at the stored resolution (224 px for ImageNet-C, 64 for Tiny-ImageNet-C) and framed like clean
        yield from off.iter_folder(
            root, name, severity, None, classes, recipe.eval.batch_size, ce.limit, recipe.data.workers
        )


def run_corruptions(
    model: nn.Module,
    recipe: Recipe,
    bench: str,
    test_ds: Dataset | None,
    device: torch.device,
    clean_err: float | None,
    console: Console,
) -> CorruptionResult:
    """Every corruption × severity of eval.corruptions on benchmark `bench`; `clean_err` (a fraction) gives
    ImageNet-C's relative mCE."""
    ce = recipe.eval.corruptions
    names = check_names(ce.corruptions, "eval.corruptions.corruptions")
    size = recipe.data.image_size
    bin_size = recipe.eval.calibration.bin_size
    test: Batch | None = None
    classes = list(getattr(test_ds, "classes", [])) or None if test_ds is not None else None
    if bench == "generated":
        if test_ds is None:
            raise UrrlError("eval.corruptions.benchmark = 'generated' needs the recipe's test split")
        test = take_subset(test_ds, ce.limit, recipe.eval.batch_size, recipe.data.workers)
        source = f"{recipe.data.dataset} test split, corrupted in memory (seed {recipe.run.seed})"
        if "frost" in names:
            from urrlkit.evaluate.corruptions.textures import frost_source, uses_fallback

            if uses_fallback():
                console.print(f"  frost textures: {frost_source()}", markup=False, highlight=False)
    else:
        off.check_root(ce.root, bench, names, "eval.corruptions.root")
        source = str(ce.root)
    # a label the model cannot predict would score as an error without a word: the -C reader refuses it
    outputs = getattr(getattr(model, "head", None), "out_features", None)
    per: dict[str, CorruptionScore] = {}
    rms_list: list[float] = []
    all_conf, all_corr = [], []
    for name in names:
        errs, rms = [], []
        for s in ce.severities:
            pred, conf, lab = predict_batches(
                model, corruption_batches(recipe, bench, name, s, test, classes, size, outputs), size, device
            )
            correct = (pred == lab).astype(np.float64)
            errs.append(100 * (1 - correct.mean()))
            rms.append(100 * metrics.rms_calibration_error(conf, correct, bin_size))
            all_conf.append(conf)
            all_corr.append(correct)
        per[name] = CorruptionScore(errors=errs, ce=None, rms=rms, n=int(lab.size))
        rms_list += rms
        console.print(f"  {name}: error {np.mean(errs):.2f} %", markup=False, highlight=False)
    out = CorruptionResult(
        benchmark=bench,
        source=source,
        severities=list(ce.severities),
        corruptions=names,
        error=float(np.mean([e for v in per.values() for e in v.errors or []])),
        mce=None,
        relative_mce=None,
        rms_calibration=float(np.mean(rms_list)),
        rms_calibration_pooled=100 * metrics.rms_calibration_error(
            np.concatenate(all_conf), np.concatenate(all_corr), bin_size),
        bin_size=bin_size,
        per_corruption=per,
    )
    if bench == "generated" and "frost" in names:
        from urrlkit.evaluate.corruptions.textures import frost_source

        out.frost_textures = frost_source()
    if bench == "imagenet-c" and all(n in metrics.ALEXNET_ERR for n in names):
        m = metrics.mean_corruption_error(
            {n: [e / 100 for e in v.errors or []] for n, v in per.items()},
            baseline="alexnet",
            clean_error=clean_err,
        )
        out.mce = m["mce"]
        out.relative_mce = m["relative_mce"]
        for n in names:
            per[n].ce = m["ce"][n]
    return out


__all__ = ["corruption_batches", "run_corruptions"]
