"""The transfer protocol's transforms and schedule against the official code they follow (Salman et al. 2020,
microsoft/robust-models-transfer, on MadryLab robustness): RandomResizedCrop(224) + flip on the image as loaded
(CIFAR: the 32-px image), Resize(256) + CenterCrop(224) for testing, and StepLR(50, 0.1) stepped per epoch."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from urrlkit.augment import geometry, rand
from urrlkit.augment.crops import CropSpec
from urrlkit.augment.supervised import eval_resize_for, supervised_transform
from urrlkit.augment.workers import SupervisedCropCollate
from urrlkit.config import load
from urrlkit.engine.schedule import lr_at
from urrlkit.evaluate.corruptions.framing import frame

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "recipes" / "paper"


@pytest.fixture(scope="module")
def cifar_like() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)


def test_step_schedule_is_robustness_steplr() -> None:
    """robustness/train.py: StepLR(step_size=args.step_lr, gamma=args.step_lr_gamma = 0.1), schedule.step()
    once after every epoch; the paper recipe's milestones give the same lr in every one of the 150 epochs."""
    ft = load(PAPER / "finetune" / "base.toml").finetune
    assert (ft.epochs, ft.schedule) == (150, "step")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=ft.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.1)
    for epoch in range(ft.epochs):
        assert lr_at(ft.lr, epoch, ft.epochs, ft.schedule, ft.milestones) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12), epoch
        opt.step()
        sched.step()


def test_cifar_train_crop_is_rrc_on_the_32px_image(cifar_like: torch.Tensor) -> None:
    """Salman et al. apply RandomResizedCrop(224) to the 32-px PIL image: the box lies on the 32-px grid and is
    resized once to 224 (PIL bilinear). Same boxes → the same pixels, within PIL's uint8 rounding."""
    x = cifar_like
    out = supervised_transform("crop_flip", 224, train=True)(x, torch.Generator().manual_seed(3))
    assert out.shape == (12, 3, 224, 224) and out.dtype == torch.float32
    g = torch.Generator().manual_seed(3)  # the draws random_resized_crop makes, in its order
    top, left, h, w = geometry.rrc_params(12, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), g)
    flips = rand.bernoulli(12, 0.5, g)
    assert int(h.max()) <= 32 and int(w.max()) <= 32 and int(h.min()) >= 1
    assert (h < 32).any() and (w < 32).any()  # the crops really cut the native image
    assert 0 < int(flips.sum()) < 12
    for i in range(12):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        ref = TF.resized_crop(pil, int(top[i]), int(left[i]), int(h[i]), int(w[i]), [224, 224],
                              interpolation=TF.InterpolationMode.BILINEAR)
        if flips[i]:
            ref = TF.hflip(ref)
        ref_t = TF.pil_to_tensor(ref).float()
        diff = ((out[i] * 255).round() - ref_t).abs()
        assert float(diff.max()) <= 1.0, i  # PIL's fixed-point bilinear, rounded to uint8
        assert float(diff.mean()) < 0.5, i  # noise images: a wrong box or flip is off by tens of levels


def test_cifar_eval_is_resize256_centercrop224(cifar_like: torch.Tensor) -> None:
    """TEST_TRANSFORMS: Resize(256) + CenterCrop(224) of the 32-px image — what the supervised eval path, the
    evaluation suites (`frame`) and torchvision on the PIL image all compute."""
    x = cifar_like
    for kind, train in (("crop_flip", False), ("none", True)):
        out = supervised_transform(kind, 224, train=train)(x, None)
        assert out.shape == (12, 3, 224, 224)
        torch.testing.assert_close(out * 255, frame(x, 224).float(), atol=0.5 + 1e-3, rtol=0)
    for i in range(3):
        pil = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        ref = TF.pil_to_tensor(TF.center_crop(TF.resize(pil, 256), 224)).float()
        assert float((out[i] * 255 - ref).abs().max()) <= 1.0 + 1e-3


def test_eval_resize_for_each_stored_size() -> None:
    assert eval_resize_for(256, 224) is None  # a 256 store is centre-cropped directly
    assert eval_resize_for(224, 224) is None  # already the network size
    assert eval_resize_for(32, 224) == 256 and eval_resize_for(512, 224) == 256
    assert eval_resize_for(32, 32) is None and eval_resize_for(64, 32) == 32


def test_photo_crops_use_torchvision_rrc_defaults() -> None:
    """File-backed sets: SupervisedCropCollate cuts RandomResizedCrop(224) with torchvision's defaults (scale
    0.08–1, ratio 3/4–4/3) + flip, on the original photo — Salman et al.'s TRAIN_TRANSFORMS, nothing else."""
    spec = SupervisedCropCollate(224, seed=0).spec
    assert spec == CropSpec("rrc", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True)
    r = load(PAPER / "finetune" / "base.toml")
    assert (r.data.image_size, r.data.load_size, r.data.crop_from, r.finetune.augment) == (
        224, 256, "original", "crop_flip")


def test_finetune_trains_on_native_32px_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 224-px transfer recipe keeps CIFAR-size arrays at 32 px for training (the crop is drawn there), where
    the stored size (load_size 256) would have upsampled every image first."""
    import urrlkit.finetune.workflow as runner
    from urrlkit.models import build_encoder

    seen: list[tuple[int, ...]] = []

    def capture(recipe: object, model: torch.nn.Module, train: Dataset, *args: object, **kw: object
                ) -> torch.nn.Module:
        seen.append(tuple(train[0][0].shape))
        return model

    monkeypatch.setattr(runner, "train_classifier", capture)
    recipe = load(PAPER / "finetune" / "base.toml", [
        "data.dataset='cifar10-sample'", "data.train_limit=16", f"run.output_dir='{tmp_path}'"])
    runner.finetune_once(recipe, build_encoder("resnet10", small_stem=True, width=4), tmp_path, with_val=False)
    assert seen == [(3, 32, 32)]


def test_adversarial_training_uses_the_best_iterate() -> None:
    """robustness' adversarial training (`--use-best 1`, attack in eval mode, update in train mode): the loss the
    regularizer returns is the train-mode loss on each image's highest-loss PGD iterate."""
    import torch.nn.functional as F

    from urrlkit.attacks import pgd_l2
    from urrlkit.finetune.regularizers import build_objective
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 10).train()
    # A step as large as ε makes PGD overshoot, so the last iterate is not always the worst one.
    cfg = load(PAPER / "finetune" / "adversarial.toml").finetune.regularizer.model_copy(update={"step_size": 0.5})
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    ref = copy.deepcopy(model)  # the objective's train-mode forward moves BN running statistics
    name, values = cfg.builder_args()  # the fine-tuning stage's edge: a registered name and plain values
    loss, _, _ = build_objective(name, model, model.encoder, **values)(x, y)
    assert model.training
    model = ref.eval()
    kw = {"eps": cfg.eps, "steps": cfg.steps, "step_size": cfg.step_size, "random_start": cfg.random_start}
    best, last = pgd_l2(model, x, y, use_best=True, **kw), pgd_l2(model, x, y, use_best=False, **kw)
    model.train()
    with torch.no_grad():
        torch.testing.assert_close(loss.detach(), F.cross_entropy(model(best), y))
        assert not torch.equal(best, last)
