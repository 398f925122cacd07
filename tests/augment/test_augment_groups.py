"""Grouping samples by op id with one host sync (urrlkit/augment/groups.py) equals nonzero per op."""

from __future__ import annotations

import torch

from urrlkit.augment.groups import copy_rows_, group, group_rows, true_indices


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


def test_copy_rows_equals_index_copy_on_every_path() -> None:
    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([4, 0, 2])
    cases = [
        torch.rand(6, 3, 8, 8, generator=g),  # 16-byte rows: the wide path
        torch.randint(0, 256, (6, 3, 4, 4), generator=g).to(torch.uint8),  # 48-byte rows, 1-byte elements
        torch.rand(6, 3, 5, 5, generator=g),  # 75 floats a row: not whole 16-byte words, plain path
        torch.rand(6, 2, generator=g, dtype=torch.float64),
    ]
    for out in cases:
        src = torch.rand((3, *out.shape[1:]), generator=g).to(out.dtype) if out.dtype != torch.uint8 else \
            torch.randint(0, 256, (3, *out.shape[1:]), generator=g).to(torch.uint8)
        want = out.clone().index_copy_(0, idx, src)
        got = out.clone()
        assert copy_rows_(got, idx, src) is got
        assert torch.equal(got, want)
    # A view at an offset that is not a whole number of 16-byte words, and a non-contiguous source.
    base = torch.rand(7, 4, generator=g)
    out = base[1:]  # offset of 4 floats: still aligned; shift by one float to break it
    odd = torch.rand(29, generator=g)[1:].view(7, 4)
    src = torch.rand(4, 3, generator=g).t()
    for target in (out, odd):
        want = target.clone().index_copy_(0, idx, src)
        copy_rows_(target, idx, src)
        assert torch.equal(target, want)


def test_copy_rows_of_an_empty_batch_is_a_no_op() -> None:
    out = torch.zeros(0, 3, 4, 4)
    assert copy_rows_(out, torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, 4, 4)).shape == (0, 3, 4, 4)
