"""Paper Eq. 2 on exact inputs: the expansion of p (catalog/family_mix.py) and the inverse-CDF draw
(augment/sampler.py), as the recipe, the sampler and the model card use them."""

import pytest
import torch

from urrlkit.augment.sampler import FamilySampler, draw_families, family_cdf
from urrlkit.catalog.family_mix import family_probabilities, family_weights
from urrlkit.hub.card import _families
from urrlkit.pretext.methods.moco_v2 import MoCoV2

BELOW_ONE = 1 - 2**-53  # the largest float64 that torch.rand can return


def test_family_weights_expand_p() -> None:
    assert family_weights(0.0) == [("augmix_allop", 0.0), ("moco_v2", 1.0)]
    assert family_weights(1.0) == [("augmix_allop", 1.0), ("moco_v2", 0.0)]
    assert family_weights(0.25) == [("augmix_allop", 0.25), ("moco_v2", 0.75)]


def test_family_probabilities_normalise_and_reject_bad_weights() -> None:
    assert family_probabilities([1.0, 3.0]) == [0.25, 0.75]
    assert family_probabilities([0.0, 2.0]) == [0.0, 1.0]
    for bad in ([0.0, 0.0], [-1.0, 2.0]):
        with pytest.raises(ValueError, match="weights"):
            family_probabilities(bad)


def test_family_cdf_is_the_cumulative_probability() -> None:
    assert family_cdf([1.0, 1.0, 2.0]).tolist() == [0.25, 0.5, 1.0]
    assert family_cdf([1.0, 1.0]).dtype == torch.float64


@pytest.mark.parametrize("p, expected", [(0.0, 1), (1.0, 0)])
def test_p_zero_never_and_p_one_always_draws_t_rob(p: float, expected: int) -> None:
    cdf = family_cdf([w for _, w in family_weights(p)])
    u = torch.tensor([0.0, 2**-53, 0.5, BELOW_ONE], dtype=torch.float64)
    assert draw_families(cdf, u).tolist() == [expected] * 4


def test_a_u_on_a_boundary_goes_to_the_family_on_its_right() -> None:
    cdf = family_cdf([1.0, 1.0, 2.0])  # [0.25, 0.5, 1.0]
    u = torch.tensor([0.0, 0.25 - 2**-54, 0.25, 0.5 - 2**-54, 0.5, 0.75, BELOW_ONE], dtype=torch.float64)
    assert draw_families(cdf, u).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_zero_weight_families_are_never_drawn() -> None:
    u = torch.tensor([0.0, 0.5 - 2**-54, 0.5, BELOW_ONE], dtype=torch.float64)
    assert draw_families(family_cdf([1.0, 0.0, 1.0]), u).tolist() == [0, 0, 2, 2]
    assert draw_families(family_cdf([0.0, 1.0, 0.0]), u).tolist() == [1, 1, 1, 1]
    # A CDF that rounding left short of 1: a u past its end goes to the last family of positive weight, not to
    # the trailing zero-weight one.
    short = torch.tensor([0.25, 1 - 2**-52, 1 - 2**-52], dtype=torch.float64)
    assert draw_families(short, torch.tensor([BELOW_ONE], dtype=torch.float64)).tolist() == [1]


def test_the_sampler_draws_with_eq2_bit_identically() -> None:
    sampler = FamilySampler(["a", "b", "c"], [0.2, 0.5, 0.3], [lambda x, g: x] * 3, image_size=8)
    drawn = sampler.draw_families(10_000, torch.Generator().manual_seed(3))
    u = torch.rand(10_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(drawn, draw_families(family_cdf([0.2, 0.5, 0.3]), u))
    # The formula the sampler used before Eq. 2 had a home of its own: the same indices.
    weights = [0.2, 0.5, 0.3]
    cdf = torch.tensor([w / sum(weights) for w in weights], dtype=torch.float64).cumsum(0)
    assert torch.equal(drawn, torch.searchsorted(cdf, u, right=True).clamp_(max=2))


def test_recipe_and_model_card_expand_p_with_family_weights() -> None:
    expected = family_weights(0.3)
    assert [(f.name, f.weight) for f in MoCoV2(p=0.3).family_weights()] == expected
    assert _families({"p": 0.3}, {}) == expected
    # The card's fallback, for a recorded recipe this install cannot validate, expands p the same way.
    assert _families({"p": 0.3, "method": "not_registered_here"}, {}) == expected
