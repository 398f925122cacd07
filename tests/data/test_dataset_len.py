"""data.dataset_len: len() of map-style data sets, a one-line TypeError for an iterable one."""

from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import IterableDataset, Subset, TensorDataset

from urrlkit.data import dataset_len


def test_map_style_sets_and_subsets_have_their_length() -> None:
    ds = TensorDataset(torch.zeros(7, 3), torch.arange(7))
    assert dataset_len(ds) == 7
    assert dataset_len(Subset(ds, [0, 2, 5])) == 3


class _Stream(IterableDataset):
    def __iter__(self) -> Iterator[int]:
        yield from range(3)


def test_an_iterable_data_set_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^_Stream has no len\(\): a map-style data set is needed$"):
        dataset_len(_Stream())
