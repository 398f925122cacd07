"""Model cards: the Jinja template from urrlkit/hub/cards/, huggingface_hub's ModelCard / ModelCardData / EvalResult
for the YAML metadata (model-index, so the Hub renders the metrics), and a short summary for `urrl pull`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml  # type: ignore[import-untyped]  # huggingface_hub's own YAML parser, for its error type
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from urrlkit import registry
from urrlkit.catalog.family_mix import family_weights
from urrlkit.engine.untrusted import read_bytes, read_json
from urrlkit.errors import CheckpointError, UrrlError
from urrlkit.results import EvalResults, Result
from urrlkit.version import __version__

TEMPLATE = "model_card.md.j2"
# A pulled card is parsed as YAML (huggingface_hub's ModelCard), which takes about a second for 100 kB of front
# matter and grows faster than linearly; urrlkit's own cards carry about 3 kB, the Hub's largest model-index
# tables a few tens of kB.
MAX_CARD_BYTES = 1 << 20
MAX_FRONT_MATTER_BYTES = 128 << 10

# [pretext] keys the card shows in rows of their own; every other key of the method is a "Method settings" item.
AUGMENTATION_KEYS = ("method", "p", "families", "views")
DEFAULT_TAGS = ["urrlkit", "self-supervised", "robustness"]


def template_text(name: str = TEMPLATE) -> str:
    """The card template, urrlkit/hub/cards/ (package data: the same file in a checkout and in an installed wheel)."""
    return resources.files("urrlkit.hub").joinpath("cards", name).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------- inputs


def find_eval_results(model_dir: Path) -> Path | None:
    """`urrl eval`'s results.json for a model dir: beside it, in its run dir (`<run>/model` → `<run>/eval`),
    or a run's linear probe (`<run>/linear/eval`, this encoder under the linear protocol)."""
    for cand in (model_dir / "eval", model_dir.parent / "eval", model_dir.parent / "linear" / "eval"):
        if (cand / "results.json").is_file():
            return cand / "results.json"
    return None


def read_results(path: Path | None) -> EvalResults | None:
    """`urrl eval`'s results.json as typed results (urrlkit/results.py), None without a file."""
    if path is None:
        return None
    data = read_json(path, "eval results")
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise CheckpointError(f"{path}: eval results lack a 'metrics' table")
    try:
        return EvalResults.from_dict(data, str(path))
    except UrrlError as exc:
        raise CheckpointError(str(exc)) from None


def _pct(x: Any) -> str:
    return f"{float(x):.2f}" if isinstance(x, int | float) else "n/a"


def _val(x: Any) -> float | None:
    return round(float(x), 2) if isinstance(x, int | float) else None


def _settings(result: Result, keys: tuple[str, ...]) -> dict[str, Any]:
    """The attack settings recorded in a result, for the model-index `args`."""
    given = result.to_dict()
    return {k: given[k] for k in keys if k in given}


def eval_table(results: EvalResults | dict[str, Any]) -> tuple[list[dict[str, str]], list[EvalResult]]:
    """results (typed, or a results.json dict) → (rows for the card's table, EvalResults for the model-index
    metadata). PGD and AutoAttack robust accuracy sit side by side, each with its settings."""
    if not isinstance(results, EvalResults):
        results = EvalResults.from_dict(results)
    m = results.metrics
    ds = str(results.dataset or "unknown")
    rows: list[dict[str, str]] = []
    evals: list[EvalResult] = []

    def add(metric: str, metric_type: str, data: str, dataset_type: str, value: Any, settings: str = "",
            args: dict[str, Any] | None = None) -> None:
        rows.append({"metric": metric, "data": data, "value": _pct(value), "settings": settings or "-"})
        v = _val(value)
        if v is not None:
            evals.append(EvalResult(task_type="image-classification", task_name="Image Classification",
                                    dataset_type=dataset_type, dataset_name=data, dataset_split="test",
                                    metric_type=metric_type, metric_name=metric, metric_value=v,
                                    metric_args=args or None))

    if (clean := m.clean) is not None:
        add("Top-1 accuracy (clean)", "accuracy", ds, ds, clean.top1, f"n = {clean.n if clean.n is not None else '?'}")
    if (cal := m.calibration) is not None:
        b = cal.bin_size if cal.bin_size is not None else 100
        add("RMS calibration error", "rms_calibration_error", ds, ds, cal.rms, f"bins of {b}")
        if cal.rms_legacy is not None:
            add("RMS calibration error (reference code, last bin unscored)", "rms_calibration_error_legacy",
                ds, ds, cal.rms_legacy, f"bins of {b}")
        if cal.ece is not None:
            add("Expected calibration error", "ece", ds, ds, cal.ece, "15 equal-width bins")
    if (adv := m.adversarial) is not None:
        args = _settings(adv, ("eps", "steps", "step_size", "norm", "random_start", "use_best", "n"))
        settings = (f"L2 PGD, ε = {adv.eps}, {adv.steps} steps, step {adv.step_size}"
                    + (f", n = {adv.n}" if adv.n is not None else ""))
        add("Robust top-1 accuracy", "robust_accuracy", ds, ds, adv.robust_top1, settings, args)
    if (aa := m.autoattack) is not None:
        args = _settings(aa, ("eps", "norm", "version", "n"))
        settings = (f"AutoAttack ({aa.version}), {aa.norm}, ε = {aa.eps}"
                    + (f", n = {aa.n}" if aa.n is not None else ""))
        add("Robust top-1 accuracy (AutoAttack)", "robust_accuracy_autoattack", ds, ds, aa.robust_top1, settings,
            args)
    if (cor := m.corruptions) is not None:
        bench = str(cor.benchmark or "generated")
        generated = bench == "generated"
        ctype = f"{ds}-c" if generated else bench
        cds = f"{ctype} (generated by urrl corrupt)" if generated else bench
        n_c = len(cor.per_corruption or {})
        settings = f"mean over {n_c} corruptions and their severities" if n_c else ""
        if cor.mce is not None:
            add("mCE (AlexNet-normalised)", "mce", cds, ctype, cor.mce, settings)
        add("Corruption error", "error", cds, ctype, cor.error, settings)
        if cor.rms_calibration is not None:
            add("RMS calibration error under corruption", "rms_calibration_error", cds, ctype,
                cor.rms_calibration, settings)
    return rows, evals


def _recipe_info(recipe: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A readable summary of the resolved recipe stored in config.json."""
    pre = recipe.get("pretext", {})
    fams = _families(pre, config)
    total = sum(w for _, w in fams) or 1.0
    families = ", ".join(f"`{n}` (probability {w / total:.2f})" for n, w in fams) or "n/a"
    opt, data = recipe.get("optim", {}), recipe.get("data", {})
    lr = f"lr {opt['lr_per_256']} per 256 images" if "lr_per_256" in opt else f"lr {opt.get('lr')}"
    reg = (recipe.get("finetune") or {}).get("regularizer") or {"type": "none"}
    stage = config.get("stage")
    applied = ("applied in this fine-tuning" if stage == "finetune"
               else "the recipe's setting for downstream fine-tuning; not applied to this checkpoint")
    return {
        "method": method_summary(str(pre.get("method", "moco_v2"))),
        "families": families,
        "p": pre.get("p"),
        # every setting of the method as the recipe recorded it: whatever the method, and for recipes of older
        # urrlkit versions too (a flat [pretext] with head_dim, queue_size, …)
        "method_settings": ", ".join([*(f"{k} {v}" for k, v in pre.items() if k not in AUGMENTATION_KEYS),
                                  f"{pre.get('views', 2)} views"]),
        "optim": (f"{opt.get('optimizer', 'sgd')}, {lr}, "
                  f"{opt.get('schedule', 'cosine')} schedule, {opt.get('epochs')} epochs, "
                  f"batch {data.get('batch_size')}, "
                  f"weight decay {opt.get('weight_decay')}"),
        "regularizer": f"{_reg_text(reg)} ({applied})",
    }


def method_summary(name: str) -> str:
    """The method plugin's one-line `summary` (torch-free: its settings class), else its name."""
    try:
        return str(getattr(registry.PRETEXTS.get(name), "summary", "") or name)
    except UrrlError:  # a method this install does not have must not stop the card
        return name


def architecture(spec: dict[str, Any]) -> str:
    """The backbone's own one-line description (its settings' `describe`, torch-free), else its name."""
    return _backbone_says(spec, "describe", str(spec.get("backbone", "?")))


def _rebuild_hint(spec: dict[str, Any]) -> str:
    return _backbone_says(spec, "rebuild_hint", "")


def _backbone_says(spec: dict[str, Any], hook: str, default: str) -> str:
    """What the spec's backbone settings' torch-free `hook` returns, else `default`."""
    from urrlkit.config.model import backbone_settings, spec_table

    try:
        return str(getattr(backbone_settings(spec_table(spec)), hook)())
    except Exception:  # a backbone this install does not have, or a spec of an older urrlkit, must not stop it
        return default


def _families(pre: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, float]]:
    """The weighted pretext families: as the trainer recorded them, else as the recipe expands them."""
    from urrlkit.config.pretext import method_settings

    if recorded := config.get("families"):
        return [(str(f.get("name")), float(f.get("weight", 1.0))) for f in recorded]
    try:
        return [(f.name, f.weight) for f in method_settings(pre).family_weights()]
    except Exception:  # a family or method this install has not registered, or an older recipe, must not stop it
        if pre.get("p") is not None:
            return family_weights(float(pre["p"]))
        return [(str(f.get("name")), float(f.get("weight", 1.0))) for f in pre.get("families") or []]


def _reg_text(reg: dict[str, Any]) -> str:
    kind = reg.get("type", "none")
    if kind == "sim":
        return f"similarity regularization (Eq. 4), λ = {reg.get('weight')}, norm {reg.get('norm', 'fro')}"
    if kind == "l2sp":
        return f"L2-SP, α = {reg.get('alpha')}, β = {reg.get('beta')}"
    if kind == "adversarial":
        return f"adversarial training, L2 PGD ε = {reg.get('eps')}, {reg.get('steps')} steps"
    if kind == "custom":
        return f"custom `{reg.get('name')}` {reg.get('params') or ''}".strip()
    return "none (cross-entropy only, Eq. 3)"


def _training_data(config: dict[str, Any], recipe: dict[str, Any] | None) -> str:
    if recipe:
        d = recipe.get("data", {})
        limit = f", first {d['train_limit']} images" if d.get("train_limit") else ""
        text = f"`{d.get('dataset')}` training split at {d.get('image_size')} px{limit}, without labels."
        ft = recipe.get("finetune") or {}
        if config.get("stage") == "finetune":
            text += f" Fine-tuned with labels on `{ft.get('dataset') or d.get('dataset')}`."
        elif config.get("stage") == "linear_eval":
            text += " The linear head was trained with labels on the same data set, encoder frozen."
        return text
    src = config.get("converted_from") or {}
    if src:
        return (f"Not recorded by urrlkit: these weights were imported from `{src.get('file')}` "
                f"({src.get('format')} layout); see the original release for its training data.")
    return "Not recorded."


def card_info(repo_id: str, config: dict[str, Any], results: EvalResults | dict[str, Any] | None,
              results_note: str = "") -> tuple[dict[str, Any], list[EvalResult]]:
    spec = config.get("encoder") or {}
    recipe = config.get("recipe")
    rows, evals = eval_table(results) if results else ([], [])
    kind = config.get("kind", "encoder")
    arch = f"`{architecture(spec)}`"
    src = config.get("converted_from")
    if recipe:
        fams = _recipe_info(recipe, config)
        summary = (f"A {arch} {'classifier' if kind == 'classifier' else 'encoder'} pretrained with "
                   f"{fams['method'].split(' (')[0]} on augmentation families {fams['families']}.")
    else:
        fams = None
        summary = f"A {arch} {kind}" + (f" imported from `{src.get('file')}`." if src else ".")
    head = (f"linear, {config.get('feature_dim') or spec.get('feature_dim')} → {config.get('num_classes')}"
            if kind == "classifier" else None)
    hub_cfg = (recipe or {}).get("hub") or {}
    license_id = hub_cfg.get("license") or ("apache-2.0" if recipe else "other")
    license_text = (f"`{license_id}`." if recipe else
                    "Imported weights keep the license of their source checkpoint; check it before reuse.")
    info = {
        "repo_id": repo_id, "title": repo_id.split("/")[-1], "summary": summary,
        "urrlkit_version": config.get("urrlkit_version", __version__), "kind": kind, "architecture": arch,
        "feature_dim": config.get("feature_dim") or spec.get("feature_dim"), "head": head,
        "input_size": config.get("input_size") or "H", "mean": spec.get("mean"), "std": spec.get("std"),
        "recipe_hash": config.get("recipe_hash"),
        # timm builds the backbone by name only when config.json names a timm `architecture` (urrlkit.hub.interop)
        "timm": config.get("architecture"), "rebuild_hint": _rebuild_hint(spec),
        "num_classes": config.get("num_classes"),
        # a ResNet named as torchvision names it (urrlkit/backbones/resnet.py): torchvision builds it too
        "tv_name": spec.get("backbone") if config.get("architecture") == spec.get("backbone") else None,
        "source": (f"`{src.get('file')}` ({src.get('format')}, sha256 {str(src.get('sha256'))[:12]})"
                   if src else None),
        "recipe": fams, "training_data": _training_data(config, recipe), "rows": rows,
        "eval_note": results_note,
        "license": license_id, "license_text": license_text,
        "tags": list(dict.fromkeys([*(hub_cfg.get("tags") or DEFAULT_TAGS), "image-feature-extraction"])),
    }
    return info, evals


def render_card(repo_id: str, config: dict[str, Any], results: EvalResults | dict[str, Any] | None = None,
                results_note: str = "", template: str | None = None) -> ModelCard:
    """The model card: YAML metadata from ModelCardData (model-index from EvalResults), body from Jinja."""
    info, evals = card_info(repo_id, config, results, results_note)
    data = ModelCardData(
        license=info["license"], library_name="urrlkit", tags=info["tags"],
        pipeline_tag="image-classification" if info["kind"] == "classifier" else "image-feature-extraction",
        # model_name only names the model-index; without results it would be a stray metadata key.
        model_name=info["title"] if evals else None, eval_results=evals or None,
    )
    return ModelCard.from_template(data, template_str=template or template_text(), info=info)


def card_summary(folder: Path) -> list[str]:
    """A few lines for `urrl pull`: what the model is and its headline metrics (from the card's metadata)."""
    lines: list[str] = []
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        cfg = read_json(cfg_path, "model config")
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{cfg_path}: not a urrlkit model config (expected a JSON object)")
        enc = cfg.get("encoder")
        spec: dict[str, Any] = enc if isinstance(enc, dict) else {}
        lines.append(f"{cfg.get('kind', 'model')}: {architecture(spec)}, "
                     f"{cfg.get('feature_dim') or spec.get('feature_dim')}-d features"
                     + (f", {cfg['num_classes']} classes" if cfg.get("num_classes") else "")
                     + (f", recipe {cfg['recipe_hash']}" if cfg.get("recipe_hash") else "")
                     + f", urrlkit {cfg.get('urrlkit_version', '?')}")
    card_path = folder / "README.md"
    if card_path.is_file():
        data = cast(ModelCardData, read_card(card_path).data)
        if data.get("license"):
            lines.append(f"license: {data.get('license')}")
        for r in data.eval_results or []:
            lines.append(f"{r.metric_name or r.metric_type} on {r.dataset_name}: {r.metric_value}")
        if not data.eval_results:
            lines.append("no evaluation results in the card")
    return lines


def read_card(path: Path) -> ModelCard:
    """A model card someone else wrote (a pulled repo's README.md), its size and front matter bounded first."""
    data = read_bytes(path, "model card", max_bytes=MAX_CARD_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: model card is not UTF-8 text (byte {exc.start})") from None
    if text.startswith("---"):
        end = text.find("\n---", 3)
        front = len(text[: end if end >= 0 else len(text)].encode())
        if front > MAX_FRONT_MATTER_BYTES:
            raise CheckpointError(f"{path}: model card metadata (YAML front matter) is {front >> 10} KiB, over "
                                  f"{MAX_FRONT_MATTER_BYTES >> 10} KiB; refused unparsed")
    try:
        return ModelCard(text, ignore_metadata_errors=True)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable model card metadata ({str(exc).splitlines()[0]})") from None
