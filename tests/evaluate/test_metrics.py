"""Metrics against hand-computed values (google-research/augmix calibration_tools.py; Hendrycks & Dietterich
2019 mCE)."""

import math

import numpy as np
import pytest
import torch

from urrlkit import metrics as M
from urrlkit.errors import UrrlError


def test_rms_two_full_bins_by_hand():
    # sorted: conf .3 .6 | .8 .9, correct 0 1 | 0 1 → bin means (.45, .5), (.85, .5)
    conf, corr = [0.9, 0.8, 0.6, 0.3], [1, 0, 1, 0]
    expect = math.sqrt(0.5 * 0.05**2 + 0.5 * 0.35**2)  # = 0.25
    assert M.rms_calibration_error(conf, corr, bin_size=2) == pytest.approx(expect)
    assert expect == pytest.approx(0.25)
    # reference loop skips the last bin
    assert M.rms_calibration_error(conf, corr, bin_size=2, legacy=True) == pytest.approx(
        math.sqrt(0.5 * 0.05**2)
    )


def test_rms_remainder_joins_last_bin():
    conf, corr = [0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 1, 1, 1]
    # bins [0, 2) and [2, 5): (.15 vs 0) weight 2/5, (.4 vs 1) weight 3/5
    expect = math.sqrt(2 / 5 * 0.15**2 + 3 / 5 * 0.6**2)
    assert M.rms_calibration_error(conf, corr, bin_size=2) == pytest.approx(expect)
    assert expect == pytest.approx(0.4743416490)
    assert M.rms_calibration_error(conf, corr, bin_size=2, legacy=True) == pytest.approx(
        math.sqrt(2 / 5 * 0.15**2)
    )
    assert M.adaptive_bins(5, 2) == [(0, 2), (2, 5)]
    assert M.adaptive_bins(250, 100) == [(0, 100), (100, 250)]


def test_rms_fewer_predictions_than_bin_size():
    # one bin with everything: |.8 − .5| = .3; legacy scores no bin at all
    assert M.rms_calibration_error([0.9, 0.7], [1, 0], bin_size=100) == pytest.approx(0.3)
    assert M.rms_calibration_error([0.9, 0.7], [1, 0], bin_size=100, legacy=True) == 0.0
    assert M.adaptive_bins(3, 100) == [(0, 3)]


def test_rms_ties_keep_input_order_and_perfect_calibration_is_zero():
    # equal confidences: a stable sort keeps [1, 1] | [0, 0] → |.5 − 1| and |.5 − 0| each weight 1/2
    assert M.rms_calibration_error([0.5] * 4, [1, 1, 0, 0], bin_size=2) == pytest.approx(0.5)
    assert M.rms_calibration_error([0.5] * 4, [1, 0, 1, 0], bin_size=2) == pytest.approx(0.0)
    # confidence equal to the bin accuracy → 0; input order irrelevant without ties
    conf = np.array([0.5, 0.5, 1.0, 1.0])
    corr = np.array([1, 0, 1, 1])
    perm = np.array([3, 0, 2, 1])
    assert M.rms_calibration_error(conf, corr, 2) == pytest.approx(0.0)
    assert M.rms_calibration_error(conf[perm], corr[perm], 2) == pytest.approx(0.0)
    assert M.rms_calibration_error(torch.tensor(conf), torch.tensor(corr), 2) == pytest.approx(0.0)


def test_rms_rejects_bad_input():
    with pytest.raises(UrrlError, match="confidence has 2 values but correct has 1"):
        M.rms_calibration_error([0.1, 0.2], [1])
    with pytest.raises(UrrlError, match="no predictions"):
        M.rms_calibration_error([], [])
    with pytest.raises(UrrlError, match="bin_size"):
        M.rms_calibration_error([0.1], [1], bin_size=0)


def test_ece_and_reliability_by_hand():
    conf, corr = [0.95, 0.95, 0.55, 0.25], [1, 0, 1, 0]
    # bins (14/15, 1]: acc .5 conf .95; (8/15, 9/15]: acc 1 conf .55; (3/15, 4/15]: acc 0 conf .25
    expect = 2 / 4 * 0.45 + 1 / 4 * 0.45 + 1 / 4 * 0.25
    assert M.expected_calibration_error(conf, corr) == pytest.approx(expect)
    assert expect == pytest.approx(0.4)
    d = M.reliability_diagram(conf, corr)
    assert len(d["edges"]) == 16 and d["count"][14] == 2 and d["count"][8] == 1 and d["count"][3] == 1
    assert d["accuracy"][14] == pytest.approx(0.5) and math.isnan(d["accuracy"][0])
    # edges: 0 goes to the first bin, 1/15 is the right edge of bin 0, 1.0 the last bin
    d = M.reliability_diagram([0.0, 1 / 15, 1.0], [0, 0, 1])
    assert d["count"][0] == 2 and d["count"][14] == 1
    assert M.expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0


def test_mce_alexnet_by_hand():
    errors = {"gaussian_noise": [0.5] * 5, "brightness": [0.2, 0.2, 0.3, 0.3, 0.5]}
    out = M.mean_corruption_error(errors)
    assert out["ce"]["gaussian_noise"] == pytest.approx(100 * 0.5 / 0.886428)  # 56.406...
    assert out["ce"]["brightness"] == pytest.approx(100 * 0.3 / 0.564592)  # 53.136...
    assert out["mce"] == pytest.approx((56.40616 + 53.13572) / 2, abs=1e-4)
    assert out["relative_mce"] is None


def test_mce_relative_and_plain():
    errors = {"gaussian_noise": [0.5] * 5}
    rel = M.mean_corruption_error(errors, clean_error=0.1)
    assert rel["relative_ce"]["gaussian_noise"] == pytest.approx(100 * 0.4 / (0.886428 - (1 - 0.56522)))
    plain = M.mean_corruption_error(
        {"fog": [0.1, 0.2, 0.3, 0.4, 0.5], "snow": [0.2] * 5}, baseline=None, clean_error=0.1
    )
    assert plain["ce"] == {"fog": pytest.approx(30.0), "snow": pytest.approx(20.0)}
    assert plain["mce"] == pytest.approx(25.0)
    assert plain["relative_mce"] == pytest.approx((20.0 + 10.0) / 2)
    custom = M.mean_corruption_error({"fog": [0.5] * 5}, baseline={"fog": 0.25})
    assert custom["mce"] == pytest.approx(200.0)


def test_mce_errors():
    with pytest.raises(UrrlError, match="no baseline error for corruption 'mist'"):
        M.mean_corruption_error({"mist": [0.1] * 5})
    with pytest.raises(UrrlError, match="unknown baseline"):
        M.mean_corruption_error({"fog": [0.1] * 5}, baseline="resnet")
    with pytest.raises(UrrlError):
        M.mean_corruption_error({})


def test_top1():
    assert M.top1(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), [1, 1, 1]) == pytest.approx(2 / 3)
    assert M.top1(np.array([2, 0]), np.array([2, 1])) == 0.5
