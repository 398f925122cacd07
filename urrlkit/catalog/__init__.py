"""urrlkit's built-in registry entries, declared by name and module without importing them (see
urrlkit/registry.py `declare`): recipe validation checks names — and family parameters, through the torch-free
checks of catalog/families.py — with nothing heavier than this package. Each entry's module registers the
same name when imported; tests/catalog/test_catalog.py holds this list equal to the live registries. Methods and
backbones are not here: they are plugins, found through the entry points of pyproject.toml as a third-party
package's are.

Importing this package declares the entries (once; `urrlkit.registry.load_builtins` imports it).
"""

from __future__ import annotations

from collections.abc import Callable

from urrlkit import registry
from urrlkit.catalog import families

_DATA = "urrlkit.data"
# Registered by name in a loop (data/torchvision_sets.py _tv): declared by module only.
TORCHVISION_SETS = ("aircraft", "caltech101", "caltech256", "cars", "dtd", "flowers102", "food101", "pets",
                    "stl10", "sun397")
# name -> module:factory under urrlkit/data (arrays.py: in-memory arrays; files.py: image files).
FILE_SETS = {"cifar10-sample": "arrays:cifar10_sample", "npz": "arrays:npz", "cifar10": "arrays:cifar10",
             "cifar100": "arrays:cifar100", "imagefolder": "files:imagefolder", "imagenet": "files:imagenet",
             "birdsnap": "files:birdsnap", "tiny-imagenet": "files:tiny_imagenet"}
# name -> (module, factory); the check of the same factory name is in catalog/families.py.
FAMILIES = {"moco_v2": ("families", "moco_v2"), "augmix": ("families", "augmix_family"),
            "augmix_allop": ("families", "augmix_allop"), "augmix_moco": ("families", "augmix_moco"),
            "identity": ("families", "identity"), "simclr": ("families", "simclr"), "byol": ("families", "byol"),
            "instdis": ("instdis_family", "instdis"),
            "prime": ("prime", "prime"), "pixmix": ("pixmix", "pixmix_family"),
            "trivialaugment": ("autoaugment", "trivialaugment"), "randaugment": ("autoaugment", "randaugment")}
FAMILY_CHECKS: dict[str, Callable[..., object]] = {
                 "moco_v2": families.moco_v2, "augmix": families.augmix, "augmix_allop": families.augmix_allop,
                 "augmix_moco": families.augmix_moco, "identity": families.identity, "simclr": families.simclr,
                 "byol": families.byol, "instdis": families.instdis,
                 "prime": families.prime, "pixmix": families.pixmix,
                 "trivialaugment": families.trivialaugment, "randaugment": families.randaugment}
REGULARIZERS = ("none", "sim", "l2sp", "adversarial")
# name -> module of urrlkit/evaluate/corruptions (the package registers them all when imported).
CORRUPTIONS = {
    "gaussian_noise": "noise_blur", "shot_noise": "noise_blur", "impulse_noise": "noise_blur",
    "defocus_blur": "noise_blur", "glass_blur": "noise_blur", "motion_blur": "noise_blur", "zoom_blur": "noise_blur",
    "snow": "weather", "frost": "weather", "fog": "weather", "brightness": "digital", "contrast": "digital",
    "elastic_transform": "digital", "pixelate": "digital", "jpeg_compression": "digital",
    "speckle_noise": "noise_blur", "gaussian_blur": "noise_blur", "spatter": "weather", "saturate": "digital",
}

# Evaluation suites, in the order they run; urrlkit/evaluate/builtin_suites.py registers them all when imported.
SUITES = ("clean", "calibration", "adversarial", "autoattack", "corruptions", "cifar10-c", "cifar100-c",
          "imagenet-c", "tiny-imagenet-c", "all")


def _declare() -> None:
    for name in TORCHVISION_SETS:
        registry.DATASETS.declare(name, f"{_DATA}.torchvision_sets")
    for name, target in FILE_SETS.items():
        registry.DATASETS.declare(name, f"{_DATA}.{target}")
    for name, (module, fn) in FAMILIES.items():
        registry.FAMILIES.declare(name, f"urrlkit.augment.{module}:{fn}", check=FAMILY_CHECKS[name])
    for name in REGULARIZERS:
        registry.REGULARIZERS.declare(name, f"urrlkit.finetune.regularizers:build_{name}")
    for name, module in CORRUPTIONS.items():
        registry.CORRUPTIONS.declare(name, f"urrlkit.evaluate.corruptions.{module}:{name}")
    for name in SUITES:
        registry.SUITES.declare(name, "urrlkit.evaluate.builtin_suites")


_declare()
