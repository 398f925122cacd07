"""The replica's results: the metrics of every finished run (results JSONs, sweep choices), mean ± sample std
over seeds, and the paper's claims checked against them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urrlkit.experiments.replica.plan import (
    LABELS,
    METHODS,
    TRANSFER,
    TRANSFER_ENCODERS,
    UNTRAINED,
    best_settings,
    finetune_dir,
    pretrain_dir,
)
from urrlkit.results import Metrics, read_results


def _read(path: Path) -> Metrics | None:
    return read_results(path).metrics if path.is_file() else None


def collect(out: Path, seeds: list[int]) -> dict[str, Any]:
    """{'linear': {method: {seed: metrics}}, 'transfer': {'method/reg': {seed: metrics}},
    'sweeps': {'method/reg': {seed: chosen settings}}} from whatever results exist under `out`."""
    out = Path(out)
    data: dict[str, Any] = {"linear": {}, "transfer": {}, "sweeps": {}}
    for m in [UNTRAINED, *METHODS]:
        for s in seeds:
            r = _read(pretrain_dir(out, m, s) / "linear" / "eval" / "results.json")
            if r:
                data["linear"].setdefault(m, {})[s] = r
    for m, reg in TRANSFER:
        for s in seeds:
            d = finetune_dir(out, m, s, reg)
            r = _read(d / "eval" / "results.json")
            if r:
                data["transfer"].setdefault(f"{m}/{reg}", {})[s] = r
            if (d / "sweep.json").is_file():
                data["sweeps"].setdefault(f"{m}/{reg}", {})[s] = best_settings(d / "sweep.json")
    return data


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    n = len(values)
    mu = sum(values) / n
    if n < 2:
        return mu, None
    return mu, math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1))


def _metric(m: Metrics, name: str) -> float | None:
    paths = {"top1": ("clean", "top1"), "c_error": ("corruptions", "error"), "calib": ("calibration", "rms"),
             "robust": ("adversarial", "robust_top1"), "c_calib": ("corruptions", "rms_calibration")}
    a, b = paths[name]
    v = getattr(getattr(m, a, None), b, None)
    return float(v) if isinstance(v, int | float) else None


def stat(per_seed: dict[Any, Metrics] | None, name: str) -> tuple[float, float | None, int] | None:
    vals = [v for m in (per_seed or {}).values() if (v := _metric(m, name)) is not None]
    if not vals:
        return None
    mu, sd = mean_std(vals)
    return mu, sd, len(vals)


def fmt(s: tuple[float, float | None, int] | None) -> str:
    if s is None:
        return "—"
    mu, sd, _n = s
    return f"{mu:.2f}" if sd is None else f"{mu:.2f} ± {sd:.2f}"


@dataclass
class Claim:
    table: str
    text: str
    a: tuple[float, float | None, int] | None
    b: tuple[float, float | None, int] | None
    higher: bool  # the paper says a > b (True) or a < b (False)

    def verdict(self) -> str:
        if self.a is None or self.b is None:
            return "not run"
        (ma, sa, na), (mb, sb, nb) = self.a, self.b
        if ma == mb:
            return "no difference"
        same = ma > mb if self.higher else ma < mb
        if sa is None or sb is None:
            return ("same direction" if same else "opposite direction") + " (1 seed, no error bar)"
        se = math.sqrt(sa**2 / na + sb**2 / nb)
        clear = abs(ma - mb) > 2 * se
        if same:
            return "reproduces" if clear else "same direction, within noise (|Δ| ≤ 2 SE)"
        return "does not reproduce (opposite, |Δ| > 2 SE)" if clear else "does not reproduce (opposite, within noise)"

    def row(self) -> list[str]:
        return [self.table, self.text, f"{fmt(self.a)} vs {fmt(self.b)}", self.verdict()]


def claims(data: dict[str, Any]) -> list[Claim]:
    lin, tr = data["linear"], data["transfer"]
    out = [
        Claim("1", "URRL top-1 > MoCo v2 top-1", stat(lin.get("urrl"), "top1"), stat(lin.get("moco_v2"), "top1"), True),
        Claim("1", "URRL corruption error < MoCo v2", stat(lin.get("urrl"), "c_error"),
              stat(lin.get("moco_v2"), "c_error"), False),
        Claim("1", "URRL RMS calibration < MoCo v2", stat(lin.get("urrl"), "calib"), stat(lin.get("moco_v2"), "calib"),
              False),
    ]
    for m in ("augmix", "augmix_allop", "augmix_moco"):
        out.append(Claim("1", f"URRL top-1 > {LABELS[m]} top-1", stat(lin.get("urrl"), "top1"),
                         stat(lin.get(m), "top1"), True))
        out.append(Claim("1", f"MoCo v2 top-1 > {LABELS[m]} top-1", stat(lin.get("moco_v2"), "top1"),
                         stat(lin.get(m), "top1"), True))
    for e in TRANSFER_ENCODERS:
        out.append(Claim("2", f"{LABELS[e]}-SR robust > {LABELS[e]} robust", stat(tr.get(f"{e}/sim"), "robust"),
                         stat(tr.get(f"{e}/none"), "robust"), True))
        out.append(Claim("2", f"{LABELS[e]}-SR clean < {LABELS[e]} clean (SR costs accuracy)",
                         stat(tr.get(f"{e}/sim"), "top1"), stat(tr.get(f"{e}/none"), "top1"), False))
    out += [
        Claim("2", "URRL robust > MoCo v2 robust (no regularizer)", stat(tr.get("urrl/none"), "robust"),
              stat(tr.get("moco_v2/none"), "robust"), True),
        Claim("2", "URRL-SR robust > MoCo v2-SR robust", stat(tr.get("urrl/sim"), "robust"),
              stat(tr.get("moco_v2/sim"), "robust"), True),
        Claim("2", "URRL-L2SP robust > URRL robust", stat(tr.get("urrl/l2sp"), "robust"),
              stat(tr.get("urrl/none"), "robust"), True),
        Claim("2", "URRL + adversarial training robust > URRL-SR robust", stat(tr.get("urrl/adversarial"), "robust"),
              stat(tr.get("urrl/sim"), "robust"), True),
    ]
    for e in TRANSFER_ENCODERS:
        out.append(Claim("3", f"{LABELS[e]}-SR RMS calib. on -C < {LABELS[e]}", stat(tr.get(f"{e}/sim"), "c_calib"),
                         stat(tr.get(f"{e}/none"), "c_calib"), False))
    out.append(Claim("3", "URRL-SR RMS calib. on -C < MoCo v2-SR", stat(tr.get("urrl/sim"), "c_calib"),
                     stat(tr.get("moco_v2/sim"), "c_calib"), False))
    return out
