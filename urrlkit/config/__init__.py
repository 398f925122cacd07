"""The TOML recipe DSL: Pydantic models, `extends` composition, `--set` overrides and one-line errors.

A recipe is the single home of every hyperparameter. `load(path, overrides)` returns a validated `Recipe`;
any problem raises `RecipeError` whose message names the file and the dotted path at fault. Recipes stay at
the edge: each stage's entry turns its sections into the plain values that the building blocks take.

Modules: sections (run, data, model, pretext, optim), finetune_eval (regularizers, schedules, finetune, eval,
hub), recipe (the Recipe root), compose (TOML files, extends, --set, load), errors (one-line messages).
"""

from urrlkit.config.compose import (
    apply_overrides,
    deep_merge,
    load,
    parse_override,
    to_file,
    validate_dict,
)
from urrlkit.config.errors import format_validation_error
from urrlkit.config.families import FamilySpec
from urrlkit.config.finetune_eval import (
    AdversarialEval,
    AdvReg,
    CalibrationEval,
    CorruptionEval,
    CustomReg,
    EvalConfig,
    FinetuneConfig,
    HubConfig,
    L2SPReg,
    LinearEvalConfig,
    NoReg,
    Regularizer,
    ScheduleConfig,
    SimReg,
)
from urrlkit.config.model import ModelConfig
from urrlkit.config.monitor import MonitorConfig
from urrlkit.config.optim import DEFAULT_LR, OptimConfig, scaled_lr
from urrlkit.config.pretext import PretextConfig
from urrlkit.config.recipe import Recipe
from urrlkit.config.sections import (
    DataConfig,
    RunConfig,
    Section,
)

__all__ = [
    "DEFAULT_LR",
    "AdvReg",
    "AdversarialEval",
    "CalibrationEval",
    "CorruptionEval",
    "CustomReg",
    "DataConfig",
    "EvalConfig",
    "FamilySpec",
    "FinetuneConfig",
    "HubConfig",
    "L2SPReg",
    "LinearEvalConfig",
    "ModelConfig",
    "MonitorConfig",
    "NoReg",
    "OptimConfig",
    "PretextConfig",
    "Recipe",
    "Regularizer",
    "RunConfig",
    "ScheduleConfig",
    "Section",
    "SimReg",
    "apply_overrides",
    "deep_merge",
    "format_validation_error",
    "load",
    "parse_override",
    "scaled_lr",
    "to_file",
    "validate_dict",
]
