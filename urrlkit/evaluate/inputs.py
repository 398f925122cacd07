"""How evaluation images reach a classifier — the one preprocessing and the one prediction that every caller
uses: the eval suites, the attacks, the linear probe and fine-tuning's test and validation passes.

A split is read at its source resolution (`eval_split`), then each uint8 batch is framed to the network size
and scaled to [0, 1] (`eval_inputs`; normalisation lives inside the model). `corruptions/framing.py` `frame`
is the framing: as is at the network size, else Resize(256) + CenterCrop(224) (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from urrlkit.errors import UrrlError
from urrlkit.evaluate.corruptions.framing import frame, load_size

if TYPE_CHECKING:
    from urrlkit.config import DataConfig, Recipe

Batch = tuple[torch.Tensor, torch.Tensor]


def eval_inputs(x: torch.Tensor, image_size: int, device: torch.device | str) -> torch.Tensor:
    """uint8 NCHW → float [0, 1] network input on `device`, framed as every evaluation image is
    (`corruptions.framing.frame`: clean, official -C and generated -C alike)."""
    return frame(x, image_size).to(device, non_blocking=True).float() / 255


def eval_split(data: DataConfig, split: str = "test", dataset: str | None = None) -> Dataset:
    """A split as evaluation reads it: array data sets at their native resolution, photographs at the eval
    resize (256 for 224); `eval_inputs` then frames both to the network size."""
    from urrlkit.data import from_config

    name = dataset or data.dataset
    return from_config(data, split, dataset=name, size=load_size(name, data.root, split, data.image_size))


def loader(ds: Dataset, batch_size: int, workers: int) -> DataLoader:
    """The evaluation loader: in order, no shuffling."""
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)


def take_subset(ds: Dataset, n: int | None, batch_size: int, workers: int) -> Batch:
    """n images of `ds` as tensors: the same fixed random subset that `data.test_limit` takes (test splits are
    often sorted by class, so the first n would be one or two classes)."""
    from torch.utils.data import Subset

    from urrlkit.data.datasets import dataset_len, subset_indices

    if n is not None and n < dataset_len(ds):
        ds = Subset(ds, subset_indices(dataset_len(ds), n))
    xs, ys = [], []
    for x, y in loader(ds, batch_size, workers):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, softmax confidence of the prediction) for a network-ready batch: the arg-max of the
    logits, as AutoAttack's and RobustBench's `clean_accuracy` score a prediction."""
    logits = model(x).float()
    return logits.argmax(1), torch.softmax(logits, 1).amax(1)


def predict_batches(
    model: nn.Module, batches: Iterable[Batch], size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted labels, confidences, true labels) over batches of uint8 images."""
    preds, confs, labels = [], [], []
    for x, y in batches:
        k, c = predict(model, eval_inputs(x, size, device))
        preds.append(k.cpu().numpy())
        confs.append(c.cpu().numpy())
        labels.append(np.asarray(y))
    if not preds:
        raise UrrlError("evaluation: no images to evaluate")
    return np.concatenate(preds), np.concatenate(confs), np.concatenate(labels).astype(np.int64)


def model_classes(model: nn.Module) -> list[str] | None:
    """The class names a fine-tuned or linear-evaluated model was saved with (config.json `classes`, see
    finetune/workflow.py), one per output; None when it has none or they do not fit its head."""
    names = (getattr(model, "config", None) or {}).get("classes")
    outputs = getattr(getattr(model, "head", None), "out_features", None)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != outputs:
        return None
    return names


def check_label_space(model: nn.Module, ds: Dataset, name: str) -> str | None:
    """UrrlError when the test split has more classes than the classifier has outputs: the images of the extra
    classes could never be predicted right, and top-1 would come out silently low.

    When the model knows its class names, the split's are compared by name: an ImageFolder's labels are its
    folders' positions, so one missing folder shifts every later label. A split whose classes are all the
    model's is relabelled to the model's indices (the info line returned says so); a class the model lacks is
    refused."""
    from urrlkit.data.files import relabel_by_name

    outputs = getattr(getattr(model, "head", None), "out_features", None)
    classes = getattr(ds, "classes", None)
    where = getattr(ds, "source", "") or f"data set {name!r}"
    known = model_classes(model)
    if known is not None and classes is not None:
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise UrrlError(f"{where}: the test split has class {unknown[0]!r}, which the model was not trained "
                            f"on ({len(unknown)} of its {len(classes)} classes are not in the model's config.json "
                            "classes); evaluate on the data set it was trained for (data.dataset)")
        if list(classes) == known:
            return None
        try:
            relabel_by_name(ds, known)
        except ValueError as exc:
            raise UrrlError(f"{where}: {exc}") from None
        return (f"{where}: the test split has {len(classes)} of the model's {len(known)} classes; its labels are "
                "mapped to the model's by class name")
    if outputs is not None and classes is not None and len(classes) > outputs:
        raise UrrlError(f"{where}: the test split has {len(classes)} classes, but the model predicts {outputs}; "
                        "evaluate on the data set it was trained for (data.dataset)")
    return None


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


__all__ = ["check_label_space", "eval_inputs", "eval_split", "loader", "model_classes", "model_device",
           "predict",
           "predict_batches", "take_subset"]


def check_model_input(model: nn.Module, recipe: Recipe) -> None:
    """UrrlError naming data.image_size when the model's backbone takes another image side only (a ViT's patch
    grid): every suite frames test images to data.image_size (evaluate/inputs.py)."""
    from urrlkit.models.backbones import Encoder, check_input_size

    enc = getattr(model, "encoder", model)
    if isinstance(enc, Encoder):
        try:
            check_input_size(enc, recipe.data.image_size)
        except ValueError as exc:
            raise UrrlError(str(exc)) from None
