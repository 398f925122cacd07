"""End to end: generated CIFAR-10-C evaluates a CPU model; results contract; CLI errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.config import validate_dict
from urrlkit.errors import UrrlError
from urrlkit.evaluate.corruptions.generate import run_corrupt
from urrlkit.evaluate.suites import plan_suites
from urrlkit.evaluate.workflow import default_out_dir, evaluate_model, run_eval
from urrlkit.hub import save_model
from urrlkit.models import Classifier, build_encoder

CIFAR = Path("/work/shared/data/cifar10")
for _p in (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10",):
    if (_p / "test.npz").is_file():
        CIFAR = _p
needs_cifar = pytest.mark.skipif(not (CIFAR / "test.npz").is_file(), reason="shared CIFAR-10 not present")


def _model(seed=0):
    torch.manual_seed(seed)
    return Classifier(build_encoder("resnet10", small_stem=True, width=4), 10).eval()


def _recipe(**eval_over):
    ev = {
        "suites": ["clean", "calibration"],
        "batch_size": 64,
        "corruptions": {"limit": 64, "severities": [1, 5], "corruptions": ["gaussian_noise", "contrast"]},
        "adversarial": {"limit": 16, "steps": 3},
    }
    ev.update(eval_over)
    return validate_dict({"data": {"dataset": "cifar10", "root": str(CIFAR), "test_limit": 64}, "eval": ev})


def test_plan_suites():
    r = validate_dict({})
    assert plan_suites(["all"], r) == (["clean", "calibration", "adversarial"], "generated")
    assert plan_suites(["cifar10-c", "clean"], r) == (["clean"], "cifar10-c")
    with pytest.raises(UrrlError, match="unknown suite 'clena'"):
        plan_suites(["clena"], r)
    with pytest.raises(UrrlError, match="one corruption benchmark"):
        plan_suites(["cifar10-c", "imagenet-c"], r)


@needs_cifar
def test_generated_cifar10c_end_to_end(tmp_path):
    model = _model()
    recipe = _recipe()
    res = evaluate_model(model, recipe, ["all"], tmp_path / "eval", name="tiny")
    on_disk = json.loads((tmp_path / "eval" / "results.json").read_text())
    m = on_disk["metrics"]
    assert on_disk["recipe_hash"] == recipe.digest() and on_disk["dataset"] == "cifar10"
    assert set(m) == {"clean", "calibration", "adversarial", "corruptions"}
    assert {"rms", "rms_legacy", "ece", "bin_size", "n"} <= set(m["calibration"])
    a = m["adversarial"]
    assert a["n"] == 16 and a["steps"] == 3 and a["robust_top1"] <= a["clean_top1"]
    c = m["corruptions"]
    assert c["benchmark"] == "generated" and c["mce"] is None
    assert set(c["per_corruption"]) == {"gaussian_noise", "contrast"}
    assert all(
        len(v["errors"]) == 2 and 0 <= min(v["errors"]) <= max(v["errors"]) <= 100
        for v in c["per_corruption"].values()
    )
    assert c["error"] == pytest.approx(
        np.mean([e for v in c["per_corruption"].values() for e in v["errors"]])
    )
    assert (tmp_path / "eval" / "corruption_errors.png").is_file() and (
        tmp_path / "eval" / "reliability.png"
    ).is_file()
    # the clean pass agrees with a direct forward pass
    from urrlkit.data import from_config, to_tensors

    x, y = to_tensors(from_config(recipe.data, "test"))
    x = x.float() / 255
    with torch.no_grad():
        direct = 100 * float((model(x).argmax(1) == y).float().mean())
    assert m["clean"]["top1"] == pytest.approx(direct)
    assert res["metrics"]["clean"]["n"] == 64

    # the same corruptions written to disk (official CIFAR-C layout) give identical errors; limit = test_limit,
    # so both sides use the data set's same fixed 64-image subset
    root = run_corrupt(
        "cifar10",
        tmp_path / "c10c",
        root=CIFAR,
        limit=64,
        corruptions=["gaussian_noise", "contrast"],
        seed=recipe.run.seed,
    )
    disk = _recipe(
        corruptions={
            "benchmark": "cifar10-c",
            "root": str(root),
            "limit": 64,
            "severities": [1, 5],
            "corruptions": ["gaussian_noise", "contrast"],
        }
    )
    res2 = evaluate_model(model, disk, ["corruptions"], tmp_path / "eval2")
    c2 = res2["metrics"]["corruptions"]
    assert c2["benchmark"] == "cifar10-c"
    for name in ("gaussian_noise", "contrast"):
        assert c2["per_corruption"][name]["errors"] == pytest.approx(c["per_corruption"][name]["errors"])


@needs_cifar
def test_run_eval_uses_stored_recipe_and_default_dir(tmp_path):
    run = tmp_path / "runs" / "demo"
    save_model(_model(), run / "model", recipe=_recipe())
    assert default_out_dir(str(run)) == run / "eval"
    assert default_out_dir(str(run / "model")) == run / "eval"
    res = run_eval(str(run), None, ["data.test_limit=32"], ["clean"], None)
    assert res["metrics"]["clean"]["n"] == 32
    assert (run / "eval" / "results.json").is_file()


def test_missing_official_root_is_one_line(tmp_path):
    recipe = validate_dict(
        {"eval": {"corruptions": {"benchmark": "cifar10-c", "root": str(tmp_path / "nope")}}}
    )
    with pytest.raises(UrrlError, match=r"nope/labels.npy"):
        evaluate_model(_model(), recipe, ["cifar10-c"], tmp_path / "e")


def test_cli_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "error:" in r.output and len(r.output.strip().splitlines()) == 1
    enc = build_encoder("resnet10", small_stem=True, width=4)
    save_model(enc, tmp_path / "enc", recipe=validate_dict({}))
    r = runner.invoke(app, ["eval", str(tmp_path / "enc")])
    assert r.exit_code == 2 and "encoder" in r.output
    r = runner.invoke(app, ["corrupt", "cifar10-sample", "--out", str(tmp_path / "c"), "-c", "fogg"])
    assert r.exit_code == 2 and "unknown corruption 'fogg'" in r.output


def test_cli_corrupt_sample(tmp_path):
    r = CliRunner().invoke(
        app, ["corrupt", "cifar10-sample", "--out", str(tmp_path / "c"), "-c", "contrast", "--limit", "10"]
    )
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "c" / "contrast.npy").shape == (50, 32, 32, 3)


# ------------------------------------------------------------------ one framing for clean and "-C" images


def _frame_all(batches):
    from urrlkit.evaluate.inputs import eval_inputs

    return torch.cat([eval_inputs(x, 224, torch.device("cpu")) for x, _ in batches])


def test_cifar_clean_and_c_share_one_framing(tmp_path):
    """32-px source at the transfer recipe's 224 px (load_size 256): the clean test images, the official
    CIFAR-C layout holding the raw arrays, and generation with the identity give identical tensors."""
    from urrlkit.evaluate.corruptions import official as off
    from urrlkit.evaluate.corruptions.framing import corrupt_framed
    from urrlkit.evaluate.inputs import loader as _loader
    from urrlkit.evaluate.suites import eval_test_set

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    np.savez(tmp_path / "test.npz", images=imgs, labels=labels)
    recipe = validate_dict(
        {"data": {"dataset": "npz", "root": str(tmp_path), "image_size": 224, "load_size": 256}}
    )
    ds = eval_test_set(recipe)
    assert tuple(ds.images.shape[-2:]) == (32, 32)  # read at the source resolution, framed once later
    clean = _frame_all(_loader(ds, 4, 0))
    c_root = tmp_path / "c"
    c_root.mkdir()
    np.save(c_root / "raw.npy", np.concatenate([imgs] * 5))
    np.save(c_root / "labels.npy", np.tile(labels, 5))
    official = _frame_all(off.iter_npy(c_root, "raw", 3, 4))
    generated = corrupt_framed(ds.images, 224, lambda x: x).float() / 255
    assert clean.shape == (6, 3, 224, 224)
    assert torch.equal(clean, official) and torch.equal(clean, generated)
    # the framing is Resize(256) + CenterCrop(224) of the 32-px image, as the transfer protocol's test transform
    up = torch.nn.functional.interpolate(
        torch.from_numpy(imgs).permute(0, 3, 1, 2).float(), size=(256, 256), mode="bilinear", antialias=True
    )
    assert torch.equal(clean * 255, up.round().clamp(0, 255)[..., 16:240, 16:240])


def test_imagenet_clean_and_c_share_one_framing(tmp_path):
    """Photographs: clean = Resize(256) + CenterCrop(224) of the original; ImageNet-C images (that framing,
    then the corruption, stored at 224) are used as they are; generation corrupts after the framing."""
    from PIL import Image

    from urrlkit.evaluate.corruptions import official as off
    from urrlkit.evaluate.corruptions.framing import corrupt_framed
    from urrlkit.evaluate.inputs import loader as _loader
    from urrlkit.evaluate.suites import eval_test_set

    rng = np.random.default_rng(1)
    for k, (w, h) in enumerate([(320, 240), (240, 300), (500, 281)]):
        d = tmp_path / "in" / "test" / f"n0{k}"
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"img{k}.png")
    recipe = validate_dict(
        {"data": {"dataset": "imagefolder", "root": str(tmp_path / "in"), "image_size": 224, "load_size": 256}}
    )
    ds = eval_test_set(recipe)
    clean = _frame_all(_loader(ds, 2, 0))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    seen = []
    generated = corrupt_framed(x, 224, lambda v: seen.append(v.shape) or v).float() / 255
    assert seen == [(3, 3, 224, 224)]  # corrupted at the network size, as ImageNet-C
    assert torch.equal(clean, generated)
    c_root = tmp_path / "c"
    for k in range(3):
        d = c_root / "raw" / "1" / f"n0{k}"
        d.mkdir(parents=True)
        Image.fromarray((clean[k] * 255).round().byte().permute(1, 2, 0).numpy()).save(d / f"img{k}.png")
    official = _frame_all(off.iter_folder(c_root, "raw", 1, None, ds.classes, 2))
    assert torch.equal(clean, official)
