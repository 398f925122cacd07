"""Paper App. B: the InstDis / PIRL recipes (with and without URRL) resolve to the original papers' settings,
InstDis's augmentation matches lemniscate's torchvision pipeline, the InstDis and PIRL modules compute exactly
their NCE objectives, and each recipe pretrains end to end on the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from urrlkit.augment.instdis_family import InstDisAug
from urrlkit.config import load
from urrlkit.models import build_encoder
from urrlkit.pretext.blocks import NCENormaliser, RandomStream
from urrlkit.pretext.common import MemoryBank
from urrlkit.pretext.jigsaw import JigsawHead, jigsaw_geometry, jigsaw_patches, jigsaw_source
from urrlkit.pretext.losses import bank_scores, nce_loss, nce_normaliser
from urrlkit.pretext.methods.instdis import InstDis
from urrlkit.pretext.methods.pirl import PIRL
from urrlkit.pretext.model import BuildContext, PretextModel, build_model
from urrlkit.pretext.workflow import pretrain

ROOT = Path(__file__).resolve().parents[2]
APP_B = ROOT / "recipes" / "paper" / "appendix_b"
RECIPES = ["instdis", "instdis_urrl", "pirl", "pirl_urrl"]
PIRL_AUG = {"scale_min": 0.08, "grayscale_first": False}


def families(r: object) -> list[tuple[str, float, dict]]:
    return [(f.name, f.weight, f.params) for f in r.pretext.family_weights()]  # type: ignore[attr-defined]


def test_recipes_validate_with_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "urrlkit.cli", "recipe", "validate",
                          *[str(APP_B / f"{n}.toml") for n in RECIPES]], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ok: ") == 4


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_resolves_to_the_stated_settings(name: str) -> None:
    r = load(APP_B / f"{name}.toml")
    # §3.1's setup, shared with Table 1.
    assert (r.data.dataset, r.data.image_size, r.data.batch_size) == ("imagenet", 224, 256)
    assert (r.model.backbone, r.model.small_stem) == ("resnet50", False)
    assert r.optim.epochs == 200 and r.optim.momentum == 0.9 and r.optim.weight_decay == 1e-4
    assert r.optim.effective_lr(256) == pytest.approx(0.03)
    p = r.pretext
    assert (p.mlp, p.head_dim, p.temperature, p.momentum, p.bank_loss) == (False, 128, 0.07, 0.5, "nce")
    urrl = name.endswith("_urrl")
    if name.startswith("instdis"):
        assert (p.method, p.negatives) == ("instdis", 4096)
        assert (r.optim.schedule, r.optim.milestones) == ("step", [120, 160])
        own = ("instdis", 0.5 if urrl else 1.0, {})
    else:
        assert (p.method, p.negatives, p.jigsaw_grid, p.pirl_lambda) == ("pirl", 32000, 3, 0.5)
        assert r.optim.schedule == "cosine"
        own = ("instdis", 0.5 if urrl else 1.0, PIRL_AUG)
    assert families(r) == ([("augmix_allop", 0.5, {}), own] if urrl else [own])
    assert r.run.name == f"imagenet-{name}"


@pytest.mark.parametrize("gray_first", [True, False])
def test_instdis_view_matches_torchvision_composition(gray_first: bool) -> None:
    # lemniscate main.py: RandomResizedCrop → RandomGrayscale → ColorJitter(0.4, 0.4, 0.4, 0.4) → flip
    # (gray_first = False: PyContrast's aug A, jitter then grayscale).
    n = 24
    x = torch.rand(n, 3, 40, 36, generator=torch.Generator().manual_seed(3))
    fam = InstDisAug(32, scale=(0.2, 1.0), grayscale_first=gray_first)
    p = fam.sample_params(n, 40, 36, torch.Generator().manual_seed(5))
    out = fam.apply(x, p)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    assert p.gray.any() and not p.gray.all() and p.flip.any()
    for i in range(n):
        ref = TF.resized_crop(x[i], int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]), [32, 32],
                              antialias=False)
        if gray_first and p.gray[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        for k in p.order[i].tolist():
            ref = fns[k](ref, float(p.factors[i, k]))
        if not gray_first and p.gray[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        if p.flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(out[i], ref.clamp(0, 1), atol=1e-4, rtol=0)
    assert (p.factors[:, 3].abs().max() > 0.3) and (p.factors[:, 3].abs().max() <= 0.4)  # hue jitter ±0.4


def test_jigsaw_geometry_and_patches() -> None:
    assert jigsaw_geometry(224, 3) == (255, 85, 64)  # PIRL / VISSL / PyContrast: 255-px crop, 85-px cells
    assert jigsaw_source(torch.zeros(2, 3, 224, 224)).shape[-1] == 255
    x = torch.arange(2 * 255 * 255, dtype=torch.float).view(2, 1, 255, 255)
    patches = jigsaw_patches(x, 3, torch.Generator().manual_seed(0))
    assert patches.shape == (18, 1, 64, 64)
    for i, patch in enumerate(patches[:, 0]):
        b, cell = divmod(i, 9)
        top, left = divmod(int(patch[0, 0]) - b * 255 * 255, 255)
        assert (top // 85, left // 85) == divmod(cell, 3)  # patch k lies in cell k (row-major) ...
        assert top % 85 + 64 <= 85 and left % 85 + 64 <= 85  # ... entirely
        assert torch.equal(patch, x[b, 0, top:top + 64, left:left + 64])


def test_jigsaw_head_concatenates_in_the_given_order() -> None:
    torch.manual_seed(0)
    head = JigsawHead(torch.nn.Linear(6, 4), 4, 3)
    feats = torch.randn(2 * 3, 6)
    order = torch.tensor([[2, 0, 1], [0, 1, 2]])
    z = head.per_patch(feats).view(2, 3, 4)
    expected = head.fc(torch.stack([z[0, [2, 0, 1]], z[1]]).flatten(1))
    torch.testing.assert_close(head(feats, order), expected)


def tiny(**kw: object) -> dict[str, object]:
    """The settings of a tiny memory-bank method (built without a recipe)."""
    return {"mlp": False, "head_dim": 8, "temperature": 0.07, "momentum": 0.5, "negatives": 16, "bn_groups": 1,
            **kw}


def built(settings: InstDis | PIRL, num_samples: int) -> PretextModel:
    torch.manual_seed(0)
    return build_model(settings, build_encoder("resnet10", small_stem=True, width=4),
                       BuildContext(num_samples=num_samples))


def memory(model: PretextModel) -> MemoryBank:
    return model.part("memory", MemoryBank)


def z_of(model: PretextModel) -> torch.Tensor:
    return model.part("normaliser", NCENormaliser).z


def test_instdis_estimates_z_once_and_computes_lemniscate_nce() -> None:
    model = built(InstDis(**tiny()), 40)
    views = [torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    index = torch.tensor([0, 3, 5, 7, 11, 39])
    for step in range(2):
        bank = memory(model).bank.clone()
        gen = torch.Generator().set_state(memory(model).gen.get_state())
        z_before = float(z_of(model))
        loss = model(views, index).loss
        feat = F.normalize(model.parts["head"](model.encoder(views[0])), dim=1)
        neg = bank[torch.randint(0, 40, (6, 16), generator=gen)]
        scores = bank_scores(feat, bank[index], neg)
        z = nce_normaliser(scores, 0.07, 40) if step == 0 else z_before
        assert float(z_of(model)) == pytest.approx(z, rel=1e-5)  # estimated on the first batch, then fixed
        assert loss.item() == pytest.approx(nce_loss(scores, 0.07, z, 40).item(), rel=1e-5)
        torch.testing.assert_close(memory(model).bank[index], F.normalize(bank[index] * 0.5 + feat * 0.5, dim=1))
        rest = torch.ones(40, dtype=torch.bool)
        rest[index] = False
        assert torch.equal(memory(model).bank[rest], bank[rest])


@pytest.mark.parametrize("grid", [0, 3])
def test_pirl_loss_is_lambda_weighted_nce_of_both_terms(grid: int) -> None:
    model = built(PIRL(**tiny(jigsaw_grid=grid, pirl_lambda=0.25)), 30)
    views = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    index = torch.tensor([1, 2, 17, 29])
    bank = memory(model).bank.clone()
    mem_gen = torch.Generator().set_state(memory(model).gen.get_state())
    jig_gen = torch.Generator().set_state(model.part("jigsaw", RandomStream).gen.get_state())
    out = model(views, index)
    loss, stats = out.loss, out.stats
    f = F.normalize(model.parts["head_f"](model.encoder(views[0])), dim=1)
    if grid:
        patches = jigsaw_patches(jigsaw_source(views[1]), grid, jig_gen)
        assert patches.shape[0] == 4 * 9
        order = torch.rand(4, 9, generator=jig_gen).argsort(dim=1)
        g = F.normalize(model.parts["head_g"](model.encoder(patches), order), dim=1)
    else:
        g = F.normalize(model.parts["head_g"](model.encoder(views[1])), dim=1)
    neg = bank[torch.randint(0, 30, (4, 16), generator=mem_gen)]  # one draw, shared by both terms
    s_t, s_i = bank_scores(g, bank[index], neg), bank_scores(f, bank[index], neg)
    z = nce_normaliser(s_t, 0.07, 30)  # VISSL estimates Z on its first output, the transformed term
    expected = 0.25 * nce_loss(s_t, 0.07, z, 30) + 0.75 * nce_loss(s_i, 0.07, z, 30)
    assert float(z_of(model)) == pytest.approx(z, rel=1e-5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert float(stats["loss_transformed"]) == pytest.approx(nce_loss(s_t, 0.07, z, 30).item(), rel=1e-5)
    # The bank follows f(v_I) only (VISSL update_mem_with_emb_index: the image head).
    torch.testing.assert_close(memory(model).bank[index], F.normalize(bank[index] * 0.5 + f * 0.5, dim=1))


def test_bank_infonce_option_is_the_softmax_form() -> None:
    model = built(InstDis(**tiny(bank_loss="infonce")), 20)
    views = [torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))] * 2
    index = torch.arange(4)
    bank = memory(model).bank.clone()
    gen = torch.Generator().set_state(memory(model).gen.get_state())
    loss = model(views, index).loss
    feat = F.normalize(model.parts["head"](model.encoder(views[0])), dim=1)
    scores = bank_scores(feat, bank[index], bank[torch.randint(0, 20, (4, 16), generator=gen)])
    expected = F.cross_entropy(scores / 0.07, torch.zeros(4, dtype=torch.long))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and float(z_of(model)) == 0.0


TINY = [
    "data.dataset='cifar10-sample'", "data.image_size=32", "data.load_size=32", "data.train_limit=64",
    "data.test_limit=32", "data.batch_size=16", "data.workers=0", "model.backbone='resnet10'", "model.width=4",
    "model.small_stem=true", "pretext.negatives=32", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=1", "optim.milestones=[]", "optim.log_every=2", "run.trackers=[]",
]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_pretrains_on_the_sample(tmp_path: Path, name: str) -> None:
    r = load(APP_B / f"{name}.toml", [*TINY, f"run.output_dir='{tmp_path}'"])
    pretrain(r)
    lines = [json.loads(x) for x in (tmp_path / r.run.name / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    mix = lines[-1]["family_fraction"]
    assert set(mix) == ({"augmix_allop", "instdis"} if name.endswith("_urrl") else {"instdis"})
