"""BYOL, MoCo v3 and DINO schedules against the references' formulas (numpy re-statements of
facebookresearch/dino utils.cosine_scheduler and DINOLoss.teacher_temp_schedule), endpoints included."""

import math
import subprocess
import sys

import numpy as np
import pytest

from urrlkit.pretext.schedules import (
    byol_momentum,
    cosine_value,
    dino_cosine_schedule,
    dino_momentum,
    dino_teacher_temp,
    moco_v3_momentum,
)


def cosine_scheduler(base: float, final: float, epochs: int, niter: int, warmup_epochs: int = 0,
                     start_warmup: float = 0.0) -> np.ndarray:
    """facebookresearch/dino utils.py cosine_scheduler, restated."""
    warmup = np.array([])
    warmup_iters = warmup_epochs * niter
    if warmup_epochs > 0:
        warmup = np.linspace(start_warmup, base, warmup_iters)
    iters = np.arange(epochs * niter - warmup_iters)
    schedule = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, schedule))


def test_cosine_value_endpoints_and_midpoint() -> None:
    assert cosine_value(0.04, 0.4, 0.0) == pytest.approx(0.04, abs=1e-15)
    assert cosine_value(0.04, 0.4, 1.0) == pytest.approx(0.4, abs=1e-15)
    assert cosine_value(0.04, 0.4, 0.5) == pytest.approx(0.22, abs=1e-15)


def test_dino_cosine_schedule_equals_reference_with_warmup() -> None:
    # lr-like: 2 warm-up epochs from 0, 5 epochs of 3 iterations; wd-like 0.04 → 0.4 without warm-up.
    ref = cosine_scheduler(0.5, 1e-6, 5, 3, warmup_epochs=2)
    ours = [dino_cosine_schedule(0.5, 1e-6, i, 15, warmup_steps=6) for i in range(15)]
    np.testing.assert_allclose(ours, ref, rtol=1e-14, atol=0)
    ref = cosine_scheduler(0.04, 0.4, 4, 5)
    ours = [dino_cosine_schedule(0.04, 0.4, i, 20) for i in range(20)]
    np.testing.assert_allclose(ours, ref, rtol=1e-14, atol=0)
    assert ours[0] == pytest.approx(0.04, abs=1e-15) and ours[-1] < 0.4  # one step short of the end
    with pytest.raises(ValueError, match="step"):
        dino_cosine_schedule(0.04, 0.4, 20, 20)


def test_dino_momentum_equals_reference() -> None:
    ref = cosine_scheduler(0.996, 1, 3, 7)
    ours = [dino_momentum(0.996, i, 21) for i in range(21)]
    np.testing.assert_allclose(ours, ref, rtol=1e-14, atol=0)
    assert ours[0] == pytest.approx(0.996, abs=1e-15) and 0.9999 < ours[-1] < 1.0


def test_byol_momentum_formula_and_clamp() -> None:
    assert byol_momentum(0.996, 0.0) == pytest.approx(0.996, abs=1e-15)
    assert byol_momentum(0.996, 1.0) == 1.0
    assert byol_momentum(0.996, 0.5) == pytest.approx(0.998, abs=1e-15)
    for k in (0, 3, 17, 100):
        frac = k / 100
        expected = 1 - (1 - 0.99) * (math.cos(math.pi * frac) + 1) / 2
        assert byol_momentum(0.99, frac) == pytest.approx(expected, abs=1e-15)
    assert byol_momentum(0.99, 1.5) == 1.0  # target_ema clamps the step at max_steps
    with pytest.raises(ValueError, match="fraction"):
        byol_momentum(0.99, -0.1)


def test_moco_v3_momentum_per_iteration() -> None:
    assert moco_v3_momentum(0.99, 0.0, 100) == pytest.approx(0.99, abs=1e-15)
    assert moco_v3_momentum(0.99, 100.0, 100) == 1.0
    assert moco_v3_momentum(0.99, 50.0, 100) == pytest.approx(0.995, abs=1e-15)
    epoch = 3 + 5 / 10  # epoch 3, iteration 5 of 10
    expected = 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / 300)) * (1.0 - 0.99)
    assert moco_v3_momentum(0.99, epoch, 300) == expected


def test_dino_teacher_temp_equals_linspace_schedule() -> None:
    nepochs, warmup = 10, 4
    ref = np.concatenate((np.linspace(0.04, 0.07, warmup), np.ones(nepochs - warmup) * 0.07))
    ours = [dino_teacher_temp(e, 0.04, 0.07, warmup) for e in range(nepochs)]
    np.testing.assert_array_equal(ours, ref)
    assert ours[0] == 0.04 and ours[warmup - 1] == 0.07
    # The reference default (no warm-up) and np.linspace's one-entry case ([warmup_temp]).
    assert [dino_teacher_temp(e, 0.04, 0.07, 0) for e in range(3)] == [0.07] * 3
    assert [dino_teacher_temp(e, 0.04, 0.07, 1) for e in range(3)] == [0.04, 0.07, 0.07]


def test_schedules_import_without_torch() -> None:
    # A fresh interpreter loading only this file (urrlkit.pretext's package __init__ imports torch itself).
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('s', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "sys.exit(int('torch' in sys.modules or 'numpy' in sys.modules))")
    import urrlkit.pretext.schedules as sched

    assert subprocess.run([sys.executable, "-c", code, sched.__file__], check=False).returncode == 0
