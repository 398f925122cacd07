"""`urrl eval`: clean top-1, calibration, L2-PGD robustness and corruption benchmarks of a classifier.

`evaluate_model` (used by the training engine and by `run_eval`) writes `<out_dir>/results.json`, prints a
Rich table and saves PNG plots; see docs/evaluation.md for the metric definitions and the results layout.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, Dataset

from urrlkit.config import Recipe
from urrlkit.errors import CheckpointError, RecipeError, UrrlError
from urrlkit.evaluate import metrics
from urrlkit.evaluate.attacks import robust_accuracy
from urrlkit.evaluate.corruptions import CHUNK, check_names, corrupt
from urrlkit.evaluate.corruptions import official as off
from urrlkit.evaluate.corruptions.framing import corrupt_framed, frame, load_size
from urrlkit.version import __version__

BENCHMARKS = ("cifar10-c", "cifar100-c", "imagenet-c", "tiny-imagenet-c")
SUITES = ("clean", "calibration", "adversarial", "corruptions", *BENCHMARKS, "all")

Batch = tuple[torch.Tensor, torch.Tensor]


def plan_suites(suites: Iterable[str], recipe: Recipe) -> tuple[list[str], str | None]:
    """(basic suites in order, corruption benchmark or None) for the requested suite names."""
    basic: list[str] = []
    bench: set[str] = set()
    for s in suites:
        if s not in SUITES:
            from urrlkit.registry import nearest

            raise UrrlError(
                f"--suite: unknown suite {s!r}{nearest(s, list(SUITES))}; allowed: {', '.join(SUITES)}"
            )
        if s == "all":
            basic += ["clean", "calibration", "adversarial"]
            bench.add(recipe.eval.corruptions.benchmark)
        elif s == "corruptions":
            bench.add(recipe.eval.corruptions.benchmark)
        elif s in BENCHMARKS:
            bench.add(s)
        else:
            basic.append(s)
    if len(bench) > 1:
        raise UrrlError(f"--suite: one corruption benchmark per evaluation, got {', '.join(sorted(bench))}")
    order = [s for s in ("clean", "calibration", "adversarial") if s in basic]
    return order, (bench.pop() if bench else None)


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _prepare(x: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """uint8 NCHW → float [0, 1] on device, framed to the network size as every evaluation image is
    (`corruptions.framing.frame`: clean, official -C and generated -C alike)."""
    return frame(x, size).to(device).float() / 255


@torch.no_grad()
def _predict(
    model: nn.Module, batches: Iterable[Batch], size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted labels, confidences, true labels) over batches of uint8 images."""
    preds, confs, labels = [], [], []
    for x, y in batches:
        p = torch.softmax(model(_prepare(x, size, device)).float(), 1)
        c, k = p.max(1)
        preds.append(k.cpu().numpy())
        confs.append(c.cpu().numpy())
        labels.append(np.asarray(y))
    if not preds:
        raise UrrlError("evaluation: no images to evaluate")
    return np.concatenate(preds), np.concatenate(confs), np.concatenate(labels).astype(np.int64)


def eval_test_set(recipe: Recipe) -> Dataset:
    """The recipe's test split as evaluation reads it: array data sets at their native resolution, photographs
    at the eval resize (256 for 224); `_prepare` then frames both to the network size."""
    from urrlkit.data import from_config

    d = recipe.data
    return from_config(d, "test", size=load_size(d.dataset, d.root, "test", d.image_size))


def check_label_space(model: nn.Module, ds: Dataset, name: str) -> None:
    """UrrlError when the test split has more classes than the classifier has outputs: the images of the extra
    classes could never be predicted right, and top-1 would come out silently low."""
    outputs = getattr(getattr(model, "head", None), "out_features", None)
    classes = getattr(ds, "classes", None)
    if outputs is not None and classes is not None and len(classes) > outputs:
        where = getattr(ds, "source", "") or f"data set {name!r}"
        raise UrrlError(f"{where}: the test split has {len(classes)} classes, but the model predicts {outputs}; "
                        "evaluate on the data set it was trained for (data.dataset)")


def _loader(ds: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)


def _subset(ds: Dataset, n: int | None, batch_size: int, workers: int) -> Batch:
    """n images of `ds` as tensors: the same fixed random subset that `data.test_limit` takes (test splits are
    often sorted by class, so the first n would be one or two classes)."""
    from torch.utils.data import Subset

    from urrlkit.data.datasets import subset_indices

    if n is not None and n < len(ds):  # type: ignore[arg-type]
        ds = Subset(ds, subset_indices(len(ds), n))  # type: ignore[arg-type]
    xs, ys = [], []
    for x, y in _loader(ds, batch_size, workers):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def _calibration(conf: np.ndarray, correct: np.ndarray, bin_size: int) -> dict[str, Any]:
    return {
        "rms": 100 * metrics.rms_calibration_error(conf, correct, bin_size),
        "rms_legacy": 100 * metrics.rms_calibration_error(conf, correct, bin_size, legacy=True),
        "ece": 100 * metrics.expected_calibration_error(conf, correct),
        "bin_size": bin_size,
        "ece_bins": 15,
        "n": int(conf.size),
        "reliability": metrics.reliability_diagram(conf, correct),
    }


def _corruption_batches(
    recipe: Recipe,
    bench: str,
    name: str,
    severity: int,
    test: Batch | None,
    classes: list[str] | None,
    size: int,
) -> Iterator[Batch]:
    ce = recipe.eval.corruptions
    if bench == "generated":
        assert test is not None
        x, y = test
        for i in range(0, x.shape[0], CHUNK):
            fn = functools.partial(corrupt, name=name, severity=severity, seed=recipe.run.seed, start=i)
            yield corrupt_framed(x[i : i + CHUNK], size, fn), y[i : i + CHUNK]
        return
    root = Path(ce.root)  # checked before
    if off.detect_layout(root) == "npy":
        yield from off.iter_npy(root, name, severity, recipe.eval.batch_size, ce.limit)
    else:
        # read at the stored resolution (224 px for ImageNet-C, 64 for Tiny-ImageNet-C) and framed like clean
        yield from off.iter_folder(
            root, name, severity, None, classes, recipe.eval.batch_size, ce.limit, recipe.data.workers
        )


def _corruptions(
    model: nn.Module,
    recipe: Recipe,
    bench: str,
    test_ds: Dataset | None,
    device: torch.device,
    clean_err: float | None,
    console: Console,
) -> dict[str, Any]:
    ce = recipe.eval.corruptions
    names = check_names(ce.corruptions, "eval.corruptions.corruptions")
    size = recipe.data.image_size
    test: Batch | None = None
    classes = list(getattr(test_ds, "classes", [])) or None if test_ds is not None else None
    if bench == "generated":
        if test_ds is None:
            raise UrrlError("eval.corruptions.benchmark = 'generated' needs the recipe's test split")
        test = _subset(test_ds, ce.limit, recipe.eval.batch_size, recipe.data.workers)
        source = f"{recipe.data.dataset} test split, corrupted in memory (seed {recipe.run.seed})"
        if "frost" in names:
            from urrlkit.evaluate.corruptions.textures import frost_source, uses_fallback

            if uses_fallback():
                console.print(f"  frost textures: {frost_source()}", markup=False, highlight=False)
    else:
        off.check_root(ce.root, bench, names, "eval.corruptions.root")
        source = str(ce.root)
    per: dict[str, Any] = {}
    rms_list = []
    all_conf, all_corr = [], []
    for name in names:
        errs, rms = [], []
        for s in ce.severities:
            pred, conf, lab = _predict(
                model, _corruption_batches(recipe, bench, name, s, test, classes, size), size, device
            )
            correct = (pred == lab).astype(np.float64)
            errs.append(100 * (1 - correct.mean()))
            rms.append(100 * metrics.rms_calibration_error(conf, correct, recipe.eval.calibration.bin_size))
            all_conf.append(conf)
            all_corr.append(correct)
        per[name] = {"errors": errs, "ce": None, "rms": rms, "n": int(lab.size)}
        rms_list += rms
        console.print(f"  {name}: error {np.mean(errs):.2f} %", markup=False, highlight=False)
    out: dict[str, Any] = {
        "benchmark": bench,
        "source": source,
        "severities": list(ce.severities),
        "corruptions": names,
        "error": float(np.mean([e for v in per.values() for e in v["errors"]])),
        "mce": None,
        "relative_mce": None,
        "rms_calibration": float(np.mean(rms_list)),
        "rms_calibration_pooled": 100
        * metrics.rms_calibration_error(
            np.concatenate(all_conf), np.concatenate(all_corr), recipe.eval.calibration.bin_size
        ),
        "bin_size": recipe.eval.calibration.bin_size,
        "per_corruption": per,
    }
    if bench == "generated" and "frost" in names:
        from urrlkit.evaluate.corruptions.textures import frost_source

        out["frost_textures"] = frost_source()
    if bench == "imagenet-c" and all(n in metrics.ALEXNET_ERR for n in names):
        m = metrics.mean_corruption_error(
            {n: [e / 100 for e in v["errors"]] for n, v in per.items()},
            baseline="alexnet",
            clean_error=clean_err,
        )
        out["mce"] = m["mce"]
        out["relative_mce"] = m["relative_mce"]
        for n in names:
            per[n]["ce"] = m["ce"][n]
    return out


def evaluate_model(
    model: nn.Module,
    recipe: Recipe,
    suites: list[str],
    out_dir: Path,
    name: str = "",
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate an in-memory classifier ([0, 1] input, logits out) on the recipe's test data; write
    `<out_dir>/results.json` and plots, print a table, and return the results dict."""
    console = console or Console(highlight=False)
    basic, bench = plan_suites(suites, recipe)
    if not basic and bench is None:
        raise UrrlError("eval.suites: nothing to evaluate")
    device = _device(model)
    was_training = model.training
    model.eval()
    ev = recipe.eval
    size = recipe.data.image_size
    need_test = bool(basic) or bench == "generated"
    test_ds = eval_test_set(recipe) if need_test else None
    if bench is not None and bench != "generated" and test_ds is None:
        try:
            test_ds = eval_test_set(recipe)
        except UrrlError:
            test_ds = None  # class names then come from the -C folders
    if test_ds is not None:
        check_label_space(model, test_ds, recipe.data.dataset)
    res: dict[str, Any] = {}
    clean_err = None
    try:
        if "clean" in basic or "calibration" in basic or (bench == "imagenet-c" and test_ds is not None):
            assert test_ds is not None
            pred, conf, lab = _predict(
                model, _loader(test_ds, ev.batch_size, recipe.data.workers), size, device
            )
            correct = (pred == lab).astype(np.float64)
            clean_err = float(1 - correct.mean())
            if "clean" in basic:
                res["clean"] = {"top1": 100 * float(correct.mean()), "n": int(lab.size)}
            if "calibration" in basic:
                res["calibration"] = _calibration(conf, correct, ev.calibration.bin_size)
        if "adversarial" in basic:
            assert test_ds is not None
            a = ev.adversarial
            x, y = _subset(test_ds, a.limit, ev.batch_size, recipe.data.workers)
            x = (_prepare(x, size, torch.device("cpu")) * 255).round().to(torch.uint8)
            res["adversarial"] = robust_accuracy(
                model,
                x,
                y,
                eps=a.eps,
                steps=a.steps,
                step_size=a.step_size,
                random_start=a.random_start,
                use_best=a.use_best,
                batch_size=ev.batch_size,
                seed=recipe.run.seed,
                device=device,
            )
        if bench is not None:
            console.print(f"corruptions ({bench}):", markup=False)
            res["corruptions"] = _corruptions(model, recipe, bench, test_ds, device, clean_err, console)
    finally:
        model.train(was_training)
    results = {
        "model": name,
        "recipe_hash": recipe.digest(),
        "dataset": recipe.data.dataset,
        "image_size": recipe.data.image_size,
        "test_limit": recipe.data.test_limit,
        "urrlkit_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "metrics": res,
    }
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    except OSError as exc:
        raise UrrlError(f"{out_dir}: cannot write results ({exc.strerror})") from None
    from urrlkit.evaluate.plots import save_plots

    results["plots"] = save_plots(results, out_dir)
    print_results(results, console)
    console.print(f"results: {out_dir / 'results.json'}", markup=False)
    return results


def print_results(results: dict[str, Any], console: Console) -> None:
    m = results["metrics"]
    t = Table(title=f"urrl eval — {results.get('model') or results['dataset']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("settings")
    if "clean" in m:
        t.add_row("clean top-1 (%)", f"{m['clean']['top1']:.2f}", f"n={m['clean']['n']}")
    if "calibration" in m:
        c = m["calibration"]
        t.add_row("RMS calibration error (%)", f"{c['rms']:.2f}", f"bins of {c['bin_size']}, n={c['n']}")
        t.add_row(
            "RMS calib. error, legacy (%)", f"{c['rms_legacy']:.2f}", "reference code: last bin skipped"
        )
        t.add_row("ECE (%)", f"{c['ece']:.2f}", "15 equal-width bins")
    if "adversarial" in m:
        a = m["adversarial"]
        t.add_row(
            "robust top-1 (%)",
            f"{a['robust_top1']:.2f}",
            f"PGD-L2 eps={a['eps']} steps={a['steps']} step={a['step_size']:.4g} "
            f"random_start={a['random_start']} use_best={a['use_best']} n={a['n']}",
        )
        t.add_row("clean top-1 on attack subset (%)", f"{a['clean_top1']:.2f}", f"n={a['n']}")
    if "corruptions" in m:
        c = m["corruptions"]
        t.add_row(
            f"{c['benchmark']} mean error (%)",
            f"{c['error']:.2f}",
            f"{len(c['corruptions'])} corruptions × severities {c['severities']}",
        )
        if c["mce"] is not None:
            t.add_row("mCE (%)", f"{c['mce']:.2f}", "normalised by AlexNet")
        t.add_row(
            f"{c['benchmark']} RMS calibration (%)",
            f"{c['rms_calibration']:.2f}",
            "mean over corruption × severity",
        )
        for name, v in c["per_corruption"].items():
            errs = " ".join(f"{e:.1f}" for e in v["errors"])
            ce = f"  CE {v['ce']:.1f}" if v["ce"] is not None else ""
            t.add_row(f"  {name}", f"{np.mean(v['errors']):.2f}", f"per severity: {errs}{ce}")
    console.print(t)


# ----------------------------------------------------------------------------------------------- CLI entry


def default_out_dir(model: str) -> Path:
    from urrlkit.hub import resolve_local

    local = resolve_local(model)
    if local is None:
        # A Hub id: results go to a local folder named after it, never into the read-only cache.
        from urrlkit.hub.ids import parse_hub_id

        hub_id = parse_hub_id(model)
        if hub_id is None:
            raise CheckpointError(f"{model}: no run directory, model directory or .safetensors file here")
        return Path("eval") / hub_id.repo_id.replace("/", "__") / (hub_id.revision or "main")
    given = Path(model).expanduser()
    model_dir = local.parent if local.is_file() else local
    if model_dir != given and model_dir == given / "model":
        return given / "eval"
    if model_dir.name == "model":
        return model_dir.parent / "eval"
    return model_dir / "eval"


def recipe_from_model(model: nn.Module, source: str, overrides: list[str]) -> Recipe:
    from urrlkit.config import apply_overrides, validate_dict

    cfg = getattr(model, "config", {}) or {}
    data = cfg.get("recipe")
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: config.json stores no recipe; pass one with --recipe")
    return validate_dict(apply_overrides(copy.deepcopy(data), overrides), f"{source} (config.json recipe)")


def run_eval(
    model: str,
    recipe: Recipe | None = None,
    overrides: list[str] | None = None,
    suites: list[str] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Load `model` (run dir, model dir or .safetensors), evaluate the suites, write results beside it."""
    from urrlkit.hub import load_model
    from urrlkit.models import Classifier

    m = load_model(model)
    if not isinstance(m, Classifier):
        raise CheckpointError(
            f"{model}: is an encoder without a classifier head; evaluate a fine-tuned or "
            "linear-evaluated model"
        )
    if recipe is None:
        recipe = recipe_from_model(m, str(model), overrides or [])
    out = Path(out_dir) if out_dir is not None else default_out_dir(model)
    if torch.cuda.is_available():
        m = m.cuda()
    return evaluate_model(m, recipe, list(suites or recipe.eval.suites), out, name=str(model))
