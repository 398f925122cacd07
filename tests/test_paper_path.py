"""The paper's recipes end to end on ImageNet-layout data, with only size overrides (issue: the paper path).

A small ImageNet tree of real, non-square JPEGs and an official-layout ImageNet-C tree are built once; then the
recipes a user would run at paper scale run through the `urrl` command: `pretrain recipes/urrl.toml` (URRL
pretraining, linear evaluation and its Table 1 suites), `finetune` with each regularizer of Table 2, and
`eval --suite imagenet-c`, which prints the mCE. Beyond "it ran", the geometry is asserted: every crop box of
the pretraining run is drawn on the decoded original photo, inside it, at the scales of its family.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from paper_trees import SIZES, imagenet_c_tree, imagenet_tree
from torchvision.transforms import RandomResizedCrop
from typer.testing import CliRunner

from urrlkit.augment import crops
from urrlkit.cli import app
from urrlkit.config import load
from urrlkit.pretext.workflow import recipe_sampler

ROOT = Path(__file__).resolve().parents[1]
URRL = ROOT / "recipes" / "urrl.toml"
FINETUNE = ROOT / "recipes" / "paper" / "finetune"

# Only sizes change: image size (> 64 px, so AugMix keeps its RandomResizedCrop as at 224 px), batch, epochs,
# queue, eval limits; plus where the data are and where the run goes. bn_groups stays "auto" (8 on one process).
SIZE = [
    "data.image_size=72", "data.load_size=82", "data.batch_size=16", "data.workers=0", "optim.epochs=1",
    "pretext.queue_size=32", "linear_eval.epochs=1", "linear_eval.batch_size=16", "eval.batch_size=16",
    "run.trackers=[]",
]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("paper")
    imagenet = imagenet_tree(base / "imagenet", classes=4, train_per_class=12, val_per_class=2)
    return imagenet, imagenet_c_tree(base / "imagenet-c", imagenet / "val", severities=(1, 3, 5))


def urrl(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"urrl {' '.join(args)}\n{result.output}\n{result.exception!r}"
    return result.output


def sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def pretrained(trees: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`urrl pretrain recipes/urrl.toml` with the size overrides; every crop box it draws is recorded."""
    imagenet, imagenet_c = trees
    out = tmp_path_factory.mktemp("runs")
    drawn: list[tuple[crops.CropSpec, torch.Tensor, torch.Tensor, crops.Boxes]] = []
    real = crops.draw_boxes

    def recording(spec, heights, widths, size, g):  # type: ignore[no-untyped-def]
        boxes = real(spec, heights, widths, size, g)
        drawn.append((spec, heights.clone(), widths.clone(), boxes))
        return boxes

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crops, "draw_boxes", recording)
        output = urrl("pretrain", str(URRL), *sets(*SIZE, f"data.root='{imagenet}'", f"run.output_dir='{out}'",
                                                   f"eval.corruptions.root='{imagenet_c}'",
                                                   "eval.corruptions.severities=[1,3,5]"))
    return {"run": out / "urrl", "output": output, "drawn": drawn, "imagenet": imagenet, "imagenet_c": imagenet_c}


def test_pretrain_linear_eval_and_table1_suites(pretrained: dict) -> None:
    run = pretrained["run"]
    assert (run / "model" / "model.safetensors").is_file()
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["crops_from"] == "original" and first["images"] == 48
    done = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    # URRL (paper Eq. 2, p = 0.5): both families drew views.
    assert set(done.get("family_fraction", {})) == {"augmix_allop", "moco_v2"}, done
    lin = json.loads((run / "linear" / "linear_eval.json").read_text())
    assert 0 <= lin["linear_top1"] <= 100
    res = json.loads((run / "linear" / "eval" / "results.json").read_text())["metrics"]
    c = res["corruptions"]
    assert c["benchmark"] == "imagenet-c" and len(c["per_corruption"]) == 15
    assert c["mce"] is not None and c["mce"] > 0
    assert "mCE" in pretrained["output"]
    # the recipe ran as the paper's: official lr rule and emulated 8-GPU shuffle-BN
    r = load(run / "recipe.toml")
    assert r.optim.lr_per_256 == pytest.approx(0.03) and r.pretext.bn_groups == "auto"


def test_every_crop_box_is_drawn_on_the_original_photo(pretrained: dict) -> None:
    drawn = pretrained["drawn"]
    assert drawn, "no crop box was drawn: the views did not come from the originals"
    originals = {(h, w) for w, h in SIZES}
    fractions: dict[float, list[torch.Tensor]] = {}
    for spec, heights, widths, boxes in drawn:
        assert spec.kind == "rrc"
        # the sizes the boxes were drawn on are the decoded photos', not a stored square
        assert {(int(h), int(w)) for h, w in zip(heights, widths, strict=True)} <= originals
        assert bool((boxes.top >= 0).all() and (boxes.left >= 0).all())
        assert bool((boxes.top + boxes.height <= heights).all() and (boxes.left + boxes.width <= widths).all())
        fractions.setdefault(spec.scale[0], []).append(boxes.height * boxes.width / (heights * widths))
    # MoCo v2 draws RandomResizedCrop(scale 0.2-1), AugMix's ImageNet pipeline RandomResizedCrop(0.08-1)
    assert set(fractions) == {0.2, 0.08}
    for lo, parts in fractions.items():
        f = torch.cat(parts).double()
        assert float(f.min()) >= lo * 0.97 and float(f.max()) <= 1.0


def test_box_area_distribution_matches_torchvision(pretrained: dict) -> None:
    """Many draws of the recipe's MoCo v2 boxes on 4:3 photos: the area fraction follows torchvision's
    RandomResizedCrop.get_params on the same photo, and the boxes reach the whole width (a centre square
    would leave a quarter of it unreachable)."""
    r = load(URRL)
    sampler = recipe_sampler(r)
    spec = sampler.crop_specs()[0][sampler.names.index("moco_v2")]  # the one view group
    assert spec.scale == (0.2, 1.0)
    g = torch.Generator().manual_seed(r.run.seed)
    n, h, w = 20000, 375, 500
    boxes = crops.draw_boxes(spec, torch.full((n,), h), torch.full((n,), w), r.data.image_size, g)
    ours = (boxes.height * boxes.width).double() / (h * w)
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    ref = torch.tensor([a * b / (h * w) for _, _, a, b in
                        (RandomResizedCrop.get_params(img, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(n))])
    assert float(ours.mean()) == pytest.approx(float(ref.mean()), abs=0.01)
    for q in (0.1, 0.5, 0.9):
        assert float(ours.quantile(q)) == pytest.approx(float(ref.double().quantile(q)), abs=0.02)
    assert int(boxes.left.min()) == 0 and int((boxes.left + boxes.width).max()) == w


@pytest.mark.parametrize("reg", ["none", "l2sp", "sim", "adversarial"])
def test_finetune_each_regularizer(pretrained: dict, reg: str, tmp_path: Path) -> None:
    imagenet = pretrained["imagenet"]
    output = urrl("finetune", str(FINETUNE / f"{reg}.toml"), "--from", str(pretrained["run"]),
                  *sets("data.dataset=imagenet", f"data.root='{imagenet}'", "data.image_size=72",
                        "data.load_size=82", "data.workers=0", "finetune.epochs=1", "finetune.batch_size=16",
                        "finetune.sweep={}", "eval.batch_size=16", "eval.adversarial.steps=2",
                        "eval.adversarial.limit=8", f"run.output_dir='{tmp_path}'", "run.trackers=[]"))
    assert "fine-tuned" in output
    out = next(tmp_path.rglob("finetune.json"))
    scores = json.loads(out.read_text())
    assert 0 <= scores["test_top1"] <= 100
    res = json.loads((out.parent / "eval" / "results.json").read_text())["metrics"]
    assert res["adversarial"]["robust_top1"] <= res["adversarial"]["clean_top1"]


def test_eval_suite_imagenet_c_prints_mce(pretrained: dict, tmp_path: Path) -> None:
    output = urrl("eval", str(pretrained["run"] / "linear" / "model"), "--suite", "imagenet-c",
                  "--recipe", str(ROOT / "recipes" / "paper" / "eval" / "imagenet_c.toml"),
                  *sets("data.image_size=72", "data.load_size=82", f"data.root='{pretrained['imagenet']}'",
                        f"eval.corruptions.root='{pretrained['imagenet_c']}'", "eval.corruptions.severities=[1,3,5]",
                        "eval.batch_size=16", "data.workers=0"),
                  "--out", str(tmp_path / "eval"))
    assert "mCE" in output
    res = json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["corruptions"]
    assert res["benchmark"] == "imagenet-c" and res["mce"] > 0
