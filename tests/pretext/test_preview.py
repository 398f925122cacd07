"""`urrl recipe views`: a PNG of a recipe's views, each framed in its family's colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.config import load
from urrlkit.data import DataRequest, build
from urrlkit.pretext.preview import FRAME, PALETTE, views_preview

ROOT = Path(__file__).resolve().parents[2]


def test_preview_rows_frames_and_originals() -> None:
    recipe = load(ROOT / "recipes" / "quickstart.toml")
    p = views_preview(recipe, images=5, seed=1, tile=40)
    assert p.names == ["augmix_allop", "moco_v2"] and p.families.shape == (5, 2)
    step = 40 + 2  # tile + make_grid padding
    assert p.grid.shape == (3, 2 + 5 * step, 2 + 3 * step)
    x = build("cifar10-sample", DataRequest(None, "train", 32)).images[:5].float() / 255
    for i in range(5):
        top = 2 + i * step
        # Column 0: the image itself (32 → 34 px nearest inside a white frame).
        inner = p.grid[:, top + FRAME:top + 40 - FRAME, 2 + FRAME:2 + 40 - FRAME]
        expect = torch.nn.functional.interpolate(x[i:i + 1], size=(34, 34), mode="nearest")[0]
        torch.testing.assert_close(inner, expect)
        for v in range(2):  # views: the frame says which family made them
            left = 2 + (1 + v) * step
            frame = p.grid[:, top, left + 20]
            torch.testing.assert_close(frame, torch.tensor(PALETTE[int(p.families[i, v])]))


def test_cli_writes_png_and_legend(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "views.png"
    result = CliRunner().invoke(app, ["recipe", "views", str(ROOT / "recipes" / "quickstart.toml"), "--out", str(out),
                                      "-n", "3", "--set", "pretext.views=3"])
    assert result.exit_code == 0, result.output
    assert "3 images × 3 views" in result.stdout and "augmix_allop #" in result.stdout
    img = np.asarray(Image.open(out))
    assert img.shape == (2 + 3 * 98, 2 + 4 * 98, 3)


def test_cli_missing_dataset_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recipe", "views", str(ROOT / "recipes" / "quickstart.toml"),
                                      "--out", str(tmp_path / "v.png"), "--set", "data.dataset='cifar10'",
                                      "--set", f"data.root='{tmp_path / 'nowhere'}'"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "v.png").exists()


def test_file_backed_views_are_cut_from_the_original_photos(tmp_path: Path) -> None:
    """For photos (data.crop_from = "original", the default) the preview's views are the ones pretraining's
    loader makes from the decoded originals for the same images and seed — not crops of the stored square."""
    from paper_trees import imagenet_tree

    from urrlkit.augment.workers import OriginalViewsCollate
    from urrlkit.data import from_config, originals
    from urrlkit.pretext.workflow import recipe_sampler

    root = imagenet_tree(tmp_path / "tree", classes=2, train_per_class=2, val_per_class=0)
    over = [f"data.root='{root}'", "data.dataset='imagefolder'", "data.image_size=64"]
    recipe = load(ROOT / "recipes" / "quickstart.toml", over)
    p = views_preview(recipe, images=3, seed=4, tile=70)
    full = originals(from_config(recipe.data, "train"))
    assert full is not None and full[0][0].shape[-2:] != (64, 64)  # non-square photos, as decoded
    collate = OriginalViewsCollate(recipe_sampler(recipe), 4, photometric=True)
    views, fam, _ = collate([(full[i][0], i) for i in range(3)])
    assert torch.equal(p.families, fam.t())
    step = 70 + 2
    inner = p.grid[:, 2 + FRAME:2 + 70 - FRAME, 2 + step + FRAME:2 + step + 70 - FRAME]  # image 0, view 0
    expect = torch.nn.functional.interpolate(views[0][:1], size=(70 - 2 * FRAME,) * 2, mode="nearest")[0]
    torch.testing.assert_close(inner, expect)
    stored = views_preview(load(ROOT / "recipes" / "quickstart.toml", [*over, "data.crop_from='stored'"]),
                           images=3, seed=4, tile=70)
    assert not torch.equal(stored.grid, p.grid)
