"""Resume never unpickles and never leaves the run directory: planted pickles at every file a resume reads
(and at Accelerate's old pickle names) fail cleanly without running; `latest` cannot point outside; the
shuffling order, the views-per-family counts and the recipe survive a resume exactly."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from urrlkit.engine.checkpoint import Checkpointer, TrainState
from urrlkit.engine.loop import LoopSpec, fit
from urrlkit.engine.statefile import read_state
from urrlkit.errors import CheckpointError, UrrlError

ROOT = Path(__file__).resolve().parents[2]
TINY = [  # as in test_engine_pretrain.py: 4 steps per epoch, 2 epochs, a checkpoint every 3 steps
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=2", "optim.checkpoint_every=3", "optim.log_every=2", "run.trackers=[]",
]


class Payload:
    """Unpickling this runs `touch <marker>` (what an attacker would plant)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, torch_format: bool) -> None:
    if torch_format:
        torch.save({"state": Payload(marker)}, path)  # a zip with data.pkl, as torch.save writes it
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: the planted bytes really run code when unpickled (so the tests below mean something)."""
    marker = tmp_path / "ran"
    plant(tmp_path / "x.pkl", marker, torch_format=False)
    pickle.loads((tmp_path / "x.pkl").read_bytes())
    assert marker.exists()


def small_setup(directory: Path) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, Checkpointer,
                                          TrainState, torch.Generator, torch.Tensor]:
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    state, gen, counts = TrainState(), torch.Generator().manual_seed(5), torch.arange(3)
    ckpt = Checkpointer(acc, directory)
    ckpt.attach(model, opt, state, [gen], {"family_counts": counts})
    return acc, model, opt, ckpt, state, gen, counts


def test_round_trip_restores_everything(tmp_path: Path) -> None:
    _, model, opt, ckpt, state, gen, _ = small_setup(tmp_path / "ck")
    state.epoch, state.step_in_epoch, state.global_step = 2, 1, 9
    ckpt.save(9)
    expect_w = {k: v.clone() for k, v in model.state_dict().items()}
    expect_m = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    expect_draw = torch.rand(4, generator=gen)
    expect_torch = torch.rand(2)
    _, model2, opt2, ckpt2, state2, gen2, counts2 = small_setup(tmp_path / "ck")
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    counts2.zero_()
    ckpt2.load()
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in expect_w.items())
    momenta = [opt2.state[p]["momentum_buffer"] for p in model2.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momenta, expect_m, strict=True))
    assert state2.state_dict() == {"epoch": 2, "step_in_epoch": 1, "global_step": 9}
    assert torch.equal(counts2, torch.arange(3))
    assert torch.equal(torch.rand(4, generator=gen2), expect_draw)
    assert torch.equal(torch.rand(2), expect_torch)  # the global torch RNG too


READ = ["model.safetensors", "optimizer.safetensors", "rank-0.safetensors", "state.json"]
NEVER_READ = ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin",
              "pytorch_model.bin", "sampler.bin", "scaler.pt"]


@pytest.mark.parametrize("torch_format", [False, True])
@pytest.mark.parametrize("name", READ)
def test_planted_pickle_in_a_read_file_is_refused_and_never_runs(tmp_path: Path, name: str,
                                                                torch_format: bool) -> None:
    _, _, _, ckpt, *_ = small_setup(tmp_path / "ck")
    step = ckpt.save(3)
    marker = tmp_path / "pwned"
    plant(step / name, marker, torch_format)
    _, _, _, ckpt2, *_ = small_setup(tmp_path / "ck")
    with pytest.raises(CheckpointError) as info:
        ckpt2.load()
    msg = str(info.value)
    assert name in msg and "\n" not in msg
    assert not marker.exists()


def test_planted_pickles_beside_a_checkpoint_are_never_opened(tmp_path: Path) -> None:
    _, _, _, ckpt, *_ = small_setup(tmp_path / "ck")
    step = ckpt.save(3)
    marker = tmp_path / "pwned"
    for name in NEVER_READ:
        plant(step / name, marker, torch_format=name.endswith((".bin", ".pt")))
    _, _, _, ckpt2, *_ = small_setup(tmp_path / "ck")
    assert ckpt2.load() == step
    assert not marker.exists()


def test_old_pickle_format_checkpoint_is_refused(tmp_path: Path) -> None:
    step = tmp_path / "ck" / "step-00000003"
    step.mkdir(parents=True)
    (tmp_path / "ck" / "latest").write_text(step.name)
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        plant(step / name, marker, torch_format=True)
    _, _, _, ckpt, *_ = small_setup(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="pickle format, which is never loaded"):
        ckpt.load()
    assert not marker.exists()


def test_tampered_shapes_and_counters_are_clean_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    _, _, _, ckpt, *_ = small_setup(tmp_path / "ck")
    step = ckpt.save(3)
    save_file({"0.weight": torch.zeros(5, 4)}, str(step / "model.safetensors"))
    _, _, _, ckpt2, *_ = small_setup(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        ckpt2.load()
    step = ckpt.save(4)
    meta = json.loads((step / "state.json").read_text())
    (step / "state.json").write_text(json.dumps({**meta, "global_step": -1}))
    with pytest.raises(CheckpointError, match=r"state\.json"):
        ckpt2.load()


@pytest.mark.parametrize("content", ["../../x", "/etc", "step-00000003/../../x", "", "step-1"])
def test_latest_cannot_point_outside_the_run(tmp_path: Path, content: str) -> None:
    _, _, _, ckpt, *_ = small_setup(tmp_path / "run" / "checkpoints")
    ckpt.save(3)
    (tmp_path / "x").mkdir()
    (tmp_path / "run" / "checkpoints" / "latest").write_text(content)
    with pytest.raises(CheckpointError, match="latest"):
        ckpt.load()


def test_symlinks_out_of_the_run_are_refused(tmp_path: Path) -> None:
    _, _, _, ckpt, *_ = small_setup(tmp_path / "run" / "checkpoints")
    step = ckpt.save(3)
    outside = tmp_path / "outside"
    shutil.copytree(step, outside)
    shutil.rmtree(step)
    step.symlink_to(outside)  # step folder itself a link
    with pytest.raises(CheckpointError, match="symbolic link"):
        ckpt.load()
    step.unlink()
    shutil.copytree(outside, step)
    latest = tmp_path / "run" / "checkpoints" / "latest"
    (tmp_path / "elsewhere").write_text(step.name)
    latest.unlink()
    latest.symlink_to(tmp_path / "elsewhere")  # the pointer a link
    with pytest.raises(CheckpointError, match="regular file"):
        ckpt.load()
    latest.unlink()
    latest.write_text(step.name)
    (step / "state.json").unlink()
    (step / "state.json").symlink_to(outside / "state.json")  # one file a link
    with pytest.raises(CheckpointError, match="symbolic link"):
        ckpt.load()


def run_order(directory: Path, stop_after: int | None, resume: bool) -> list[list[int]]:
    """Train a toy model over a shuffled loader with checkpoints; the index batches it saw, in order."""
    acc = Accelerator(cpu=True, dataloader_config=__import__("accelerate").utils.DataLoaderConfiguration(
        use_seedable_sampler=True, data_seed=3))
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(torch.arange(20)), batch_size=4, shuffle=True)
    model, opt, loader = acc.prepare(model, opt, loader)
    seen: list[list[int]] = []

    def step(batch: list[torch.Tensor], progress: object = None) -> tuple[torch.Tensor, dict]:
        seen.append(batch[0].tolist())
        return model(batch[0].float()[:, None]).mean(), {}

    spec = LoopSpec(epochs=3, lr=0.01, checkpoint_every=2, log_every=100, stop_after=stop_after)
    fit(acc, model, opt, loader, step, spec, Checkpointer(acc, directory), None, [], resume=resume)
    return seen


def test_shuffling_order_after_resume_is_the_uninterrupted_one(tmp_path: Path) -> None:
    full = run_order(tmp_path / "full", None, False)
    first = run_order(tmp_path / "cut", 7, False)  # 5 steps/epoch: stops mid-epoch 2 after the step-6 checkpoint
    rest = run_order(tmp_path / "cut", None, True)
    assert first == full[:7]
    assert rest == full[6:]  # resumes after step 6: step 7 is done again, as a kill after it would need


def test_resume_with_a_changed_recipe_names_the_keys_and_keeps_recipe_toml(tmp_path: Path) -> None:
    from urrlkit.config import load
    from urrlkit.pretext.workflow import pretrain

    def tiny(*extra: str) -> object:
        return load(ROOT / "recipes" / "quickstart.toml",
                    [*TINY, f"run.output_dir='{tmp_path}'", "run.name='r'", *extra])

    pretrain(tiny(), stop_after=3)
    stored = (tmp_path / "r" / "recipe.toml").read_bytes()
    with pytest.raises(UrrlError, match=r"differs in model\.width, pretext\.p, which a run cannot") as info:
        pretrain(tiny("optim.lr=0.5", "pretext.p=0.25", "model.width=8", "optim.log_every=1"), resume=True)
    assert "\n" not in str(info.value) and "optim." not in str(info.value)
    assert (tmp_path / "r" / "recipe.toml").read_bytes() == stored
    (tmp_path / "r" / "checkpoints" / "latest").write_text("../../elsewhere")
    with pytest.raises(CheckpointError, match="latest"):  # a broken checkpoint also fails before any write
        pretrain(tiny("optim.lr=0.5"), resume=True)
    assert (tmp_path / "r" / "recipe.toml").read_bytes() == stored
    (tmp_path / "r" / "checkpoints" / "latest").write_text("step-00000003")
    # Views per family count the whole run: the resumed run's counts are the uninterrupted run's.
    pretrain(tiny("optim.log_every=1"), resume=True)
    pretrain(load(ROOT / "recipes" / "quickstart.toml", [*TINY, f"run.output_dir='{tmp_path}'", "run.name='f'"]))

    def counts(run: str) -> torch.Tensor:
        ckpts = tmp_path / run / "checkpoints"
        state = read_state(ckpts / (ckpts / "latest").read_text() / "rank-0.safetensors")
        return state["extra"]["family_counts"]

    assert torch.equal(counts("r"), counts("f"))
    assert int(counts("r").sum()) == 8 * 32 * 2  # 8 steps of 32 images, 2 views each: the whole run


def test_divergence_message_says_which_checkpoint_is_kept(tmp_path: Path) -> None:
    """Weights that are huge but finite are never checkpointed as good, and the stop message names the kept
    checkpoint — or says that none exists."""
    from urrlkit.config import load
    from urrlkit.errors import TrainingError
    from urrlkit.pretext.workflow import pretrain

    def tiny(name: str, *extra: str) -> object:
        return load(ROOT / "recipes" / "quickstart.toml",
                    [*TINY, f"run.output_dir='{tmp_path}'", f"run.name='{name}'", *extra])

    with pytest.raises(TrainingError, match="no checkpoint had been written yet"):
        pretrain(tiny("a", "optim.lr=1e30", "optim.checkpoint_every=1"))
    assert not (tmp_path / "a" / "checkpoints" / "latest").exists()
    pretrain(tiny("b"), stop_after=3)
    with pytest.raises(TrainingError, match=r"the last good checkpoint \(step-00000003, global step 3\) is kept"):
        pretrain(tiny("b", "optim.lr=1e30", "optim.checkpoint_every=1"), resume=True)
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text() == "step-00000003"


def test_a_whole_resume_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch.load and every pickle entry point made to fail, a real pretraining resume still completes."""
    from urrlkit.config import load
    from urrlkit.pretext.workflow import pretrain

    recipe = load(ROOT / "recipes" / "quickstart.toml", [*TINY, f"run.output_dir='{tmp_path}'", "run.name='p'"])
    pretrain(recipe, stop_after=3)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("resume unpickled something")

    for target, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(target, name, refuse)
    pretrain(recipe, resume=True)
    assert (tmp_path / "p" / "model" / "model.safetensors").is_file()


def test_resume_compares_fields_added_since_the_stored_recipe_at_their_defaults(tmp_path: Path) -> None:
    """A run recorded before a field existed (here: all of [monitor] and eval.autoattack) resumes; a value set
    away from the default in the new recipe is still a difference."""
    import tomllib

    from urrlkit.config import load
    from urrlkit.engine.lock import recipe_differences, with_defaults

    recipe = load(ROOT / "recipes" / "paper" / "urrl.toml")
    old = tomllib.loads(recipe.to_toml())
    del old["monitor"]
    del old["eval"]["autoattack"]
    new = tomllib.loads(recipe.to_toml())
    assert "monitor.knn" in recipe_differences(old, new)  # as written, every new key would differ
    assert recipe_differences(with_defaults(recipe, old), new) == []
    changed = load(ROOT / "recipes" / "paper" / "urrl.toml", ["monitor.linear=true"])
    assert recipe_differences(with_defaults(changed, old), tomllib.loads(changed.to_toml())) == ["monitor.linear"]
    old["model"]["no_such_field"] = 1  # a stored recipe the class refuses is compared as written
    assert "model.no_such_field" in recipe_differences(with_defaults(recipe, old), new)


@pytest.mark.parametrize("key", ["optim.momentum=0.5", "optim.weight_decay=0.01"])
def test_resume_refuses_optimizer_values_the_saved_state_would_override(tmp_path: Path, key: str) -> None:
    """torch's Optimizer.load_state_dict restores the saved momentum / weight decay over the recipe's, so a
    change there would be accepted and then ignored: it is refused instead, recipe.toml untouched."""
    from urrlkit.config import load, to_file
    from urrlkit.engine.lock import check_resume_recipe

    stored = tmp_path / "recipe.toml"
    to_file(load(ROOT / "recipes" / "quickstart.toml"), stored)
    before = stored.read_bytes()
    with pytest.raises(UrrlError, match=rf"differs in {key.split('=')[0]}, which a run cannot"):
        check_resume_recipe(load(ROOT / "recipes" / "quickstart.toml", [key]), stored)
    assert stored.read_bytes() == before
