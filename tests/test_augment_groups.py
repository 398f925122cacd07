"""Grouping samples by op id with one host sync (urrlkit/augment/groups.py) equals nonzero per op."""

from __future__ import annotations

import torch

from urrlkit.augment.groups import group, group_rows, true_indices


def test_group_rows_matches_nonzero_per_op() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (4, 300), generator=g)  # 5 ops; value 5 is "no op"
    ids[2] = 5  # a row where nothing runs
    rows = group_rows(ids, 5)
    assert rows[2] == []
    for r, groups in enumerate(rows):
        expected = [(k, (ids[r] == k).nonzero().squeeze(1)) for k in range(5) if (ids[r] == k).any()]
        assert [k for k, _ in groups] == [k for k, _ in expected]
        for (_, got), (_, want) in zip(groups, expected, strict=True):
            assert torch.equal(got, want)


def test_group_skips_empty_and_true_indices() -> None:
    ids = torch.tensor([2, 0, 2, 2, 0])
    assert [(k, i.tolist()) for k, i in group(ids, 3)] == [(0, [1, 4]), (2, [0, 2, 3])]
    a, b, c = true_indices([torch.tensor([True, False, True]), torch.zeros(3, dtype=torch.bool),
                            torch.ones(3, dtype=torch.bool)])
    assert a.tolist() == [0, 2] and b.numel() == 0 and c.tolist() == [0, 1, 2]
