"""Views made in DataLoader workers (augment/workers.py): per-batch seeds, independent of the worker count."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from urrlkit.augment import build_sampler
from urrlkit.augment.workers import AugmentingCollate, batch_seed
from urrlkit.data import DataRequest, build
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.workflow import Indexed


def test_batch_seed_depends_on_seed_indices_and_order() -> None:
    idx = torch.tensor([3, 1, 4, 1, 5])
    assert batch_seed(0, idx) == batch_seed(0, idx.clone())
    assert batch_seed(0, idx) != batch_seed(1, idx)
    assert batch_seed(0, idx) != batch_seed(0, idx.flip(0))
    assert batch_seed(0, idx) != batch_seed(0, idx[:4])
    assert 0 <= batch_seed(2**40, idx) < 2**63  # a valid manual_seed for any run seed


def _batches(workers: int) -> list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
    ds = Indexed(build("cifar10-sample", DataRequest(None, "train", 32)))
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32, views=2)
    loader = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0),
                        num_workers=workers, collate_fn=AugmentingCollate(sampler, seed=7))
    return [b for b, _ in zip(loader, range(4), strict=False)]


def test_worker_views_match_the_sampler_and_not_the_worker_count() -> None:
    inline, pooled = _batches(0), _batches(2)
    ds = build("cifar10-sample", DataRequest(None, "train", 32))
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32, views=2)
    for (views, fam, index), (views2, fam2, index2) in zip(inline, pooled, strict=True):
        assert torch.equal(index, index2) and torch.equal(fam, fam2)
        assert all(torch.equal(a, b) for a, b in zip(views, views2, strict=True))
        # Exactly the sampler on the stacked images with the batch's own generator.
        g = torch.Generator().manual_seed(batch_seed(7, index))
        ref, ref_fam = sampler(torch.stack([ds[int(i)][0] for i in index]), g)
        assert torch.equal(fam, ref_fam) and all(torch.equal(a, b) for a, b in zip(views, ref, strict=True))
        assert views[0].shape == (16, 3, 32, 32) and views[0].dtype == torch.float32
    # Different batches draw different augmentations (not one seed reused).
    assert not torch.equal(inline[0][1], inline[1][1]) or not torch.equal(inline[0][0][0], inline[1][0][0])


def test_collate_survives_pickling_for_spawned_workers() -> None:
    import pickle

    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=32, views=2)
    collate = AugmentingCollate(sampler, seed=3)
    ds = Indexed(build("cifar10-sample", DataRequest(None, "train", 32)))
    items = [ds[i] for i in range(8)]
    a, b = collate(items), pickle.loads(pickle.dumps(collate))(items)
    assert torch.equal(a[1], b[1]) and all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))
