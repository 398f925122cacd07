"""Generate docs/recipes.md (every recipe section and field, from the Pydantic models) and docs/cli.md
(`urrl --help` of every command). Run from anywhere: `python docs/gen_recipe_reference.py`.
`--check` exits 1 when the committed pages are out of date (for CI or a pre-commit hook)."""

from __future__ import annotations

import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from urrlkit.config.plugins import dispatch_of

DOCS = Path(__file__).resolve().parent

SECTION_INTRO = {
    "run": "Where a run writes its checkpoints, logs and results, and its seed.",
    "data": "The training data set and how images are stored and batched. Relative paths are relative to "
            "the directory `urrl` runs in.",
    "model": "The encoder backbone, a plugin: `backbone` names it, and the rest of the table is that backbone's own "
             "settings (below, one table per backbone; urrlkit/backbones/).",
    "pretext": "The self-supervised method, a plugin: `method` names it, and the rest of the table is that method's "
               "own settings (below, one table per method; urrlkit/pretext/methods/) besides the augmentation "
               "families every method draws its views from (URRL's hierarchical sampler, paper Eq. 2).",
    "optim": "Optimisation of the pretraining stage.",
    "monitor": "Online monitors during pretraining, logged per epoch: a linear probe on detached features and a "
               "weighted kNN monitor (off in the paper recipes, on in the quickstart), and the representation "
               "health (embedding std, effective rank, alignment, uniformity; collapse warnings; on by default).",
    "linear_eval": "Linear evaluation after pretraining: frozen encoder, trained linear classifier.",
    "finetune": "Transfer: fine-tuning a pretrained encoder with a linear head (paper Eq. 3) and an optional "
                "regularizer (Eq. 4).",
    "eval": "Robustness evaluation suites run by `urrl eval`.",
    "hub": "Hugging Face Hub metadata used by `urrl push`.",
}


def _type_name(ann: Any) -> str:
    origin = get_origin(ann)
    if origin is typing.Annotated:  # a validated type (e.g. eval.suites' registered names): show the base type
        return _type_name(get_args(ann)[0])
    if origin is Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in get_args(ann))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        inner = " \\| ".join(_type_name(a) for a in args)
        return inner + (" \\| none" if len(args) < len(get_args(ann)) else "")
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(ann))}]"
    if isinstance(ann, type):
        return {"Path": "path", "float": "float", "int": "int", "str": "str", "bool": "bool"}.get(
            ann.__name__, ann.__name__)
    return str(ann)


def _constraints(field: FieldInfo) -> str:
    parts = []
    for c in field.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(c, attr, None) is not None:
                parts.append(f"{sym} {getattr(c, attr)}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "—"
    if value is None:
        return "none"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _doc(model: type[BaseModel]) -> str:
    """A model's own docstring (not one inherited from pydantic's BaseModel)."""
    return " ".join((model.__dict__.get("__doc__") or "").split())


def _models(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in get_args(ann) for m in _models(a)]


def _table(model: type[BaseModel], prefix: str, out: list[str], nested: list[tuple[str, Any]]) -> None:
    out += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        members = _models(field.annotation)
        if members and get_origin(field.annotation) is not list:
            nested.append((f"{prefix}.{name}", field))
            link = f"[`[{prefix}.{name}]`](#{_anchor(prefix + '.' + name)})"
            out.append(f"| `{name}` | table | — | see {link} |")
            continue
        meaning = field.description or ""
        if members:  # a list of tables
            nested.append((f"{prefix}.{name}", field))
            meaning = (meaning + " " if meaning else "") + f"array of tables, see `[[{prefix}.{name}]]`"
        cons = _constraints(field)
        typ = _type_name(field.annotation) + (f" ({cons})" if cons else "")
        out.append(f"| `{name}` | {typ} | {_default(field)} | {meaning} |")
    out.append("")


def _plugins(section: str, dispatch: Any, base: type[BaseModel], out: list[str]) -> None:
    """One table per plugin of a plugin section ([pretext] per method, [model] per backbone): its own fields."""
    classes: dict[type[BaseModel], list[str]] = {}
    for name in sorted(dispatch.registry.entry_points()):
        cls = dispatch.resolve(f"{name}:x" if getattr(dispatch.registry.get(name), "prefixed", False) else name)
        if cls is not None:
            classes.setdefault(cls, []).append(f"{name}:<name>" if getattr(cls, "prefixed", False) else name)
    for cls, names in classes.items():
        own = {k: v for k, v in cls.model_fields.items() if k not in base.model_fields}
        out += [f"### {dispatch.key} = " + " \\| ".join(f'`"{n}"`' for n in names), ""]
        if _doc(cls):
            out += [_doc(cls), ""]
        if not own:
            out += ["No settings of its own.", ""]
            continue
        view = type(cls.__name__, (BaseModel,), {"__annotations__": {}})
        view.model_fields = own  # type: ignore[misc]  # the table of the plugin's own fields only
        _table(view, section, out, [])


def _anchor(key: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", key.lower().replace(" ", "-"))


def recipe_reference() -> str:
    from urrlkit import registry
    from urrlkit.config import Recipe

    out = [
        "# Recipe reference",
        "",
        "<!-- generated by docs/gen_recipe_reference.py from urrlkit/config/; do not edit by hand -->",
        "",
        "A recipe is one TOML file holding every hyperparameter of a run. Every key is optional: a missing "
        "key takes the default below. Unknown keys are errors (with the nearest valid name), so a typo never "
        "silently falls back to a default.",
        "",
        "- `extends = \"other.toml\"` (top level, relative to this file) starts from another recipe: tables "
        "merge key by key, every other value — lists included — is replaced. A table whose `type` changes "
        "(e.g. `finetune.regularizer` from `sim` to `l2sp`) is replaced whole. Chains may nest, at most 32 "
        "files deep; cycles are errors.",
        "- `--set a.b=value` on any command overrides a value after `extends` is resolved, merged as an "
        "extending file would be: a table value merges key by key (`--set 'optim={epochs=1}'` keeps the other "
        "`optim` keys), an empty table replaces (`--set finetune.sweep={}`: no sweep). The value is TOML "
        "(`0.1`, `true`, `[60, 80]`, `\"text\"`; a bare word is a string). Repeat it; the last wins. "
        "`extends` itself cannot be set.",
        "- `urrl recipe validate FILE…` checks recipes; `urrl recipe show FILE` prints the resolved recipe "
        "as self-contained TOML.",
        "",
        "Registered names: data sets "
        + ", ".join(f"`{n}`" for n in registry.DATASETS.names())
        + "; backbones " + ", ".join(f"`{n}`" for n in registry.BACKBONES.names())
        + "; augmentation families " + (", ".join(f"`{n}`" for n in registry.FAMILIES.names()) or "(none)")
        + ".",
        "",
    ]
    for name, field in Recipe.model_fields.items():
        if name == "extends":
            continue
        (model,) = _models(field.annotation)
        out += [f"## [{name}]", "", SECTION_INTRO.get(name, _doc(model)), ""]
        nested: list[tuple[str, Any]] = []
        _table(model, name, out, nested)
        dispatch = dispatch_of(field)
        if dispatch is not None:
            _plugins(name, dispatch, model, out)
        while nested:
            key, sub = nested.pop(0)
            members = _models(sub.annotation)
            if len(members) == 1:
                arr = get_origin(sub.annotation) is list
                out += [f"### {'[[' if arr else '['}{key}{']]' if arr else ']'}", ""]
                if _doc(members[0]):
                    out += [_doc(members[0]), ""]
                _table(members[0], key, out, nested)
            else:  # a discriminated union: one table per variant, chosen by `type`
                out += [f"### [{key}]", "", "One of the variants below, chosen by `type`.", ""]
                for m in members:
                    tag = m.model_fields["type"].default
                    out += [f"#### `type = \"{tag}\"`", ""]
                    if _doc(m):
                        out += [_doc(m), ""]
                    _table(m, key, out, [])
    return "\n".join(out).rstrip() + "\n"


def cli_reference() -> str:
    from typer.testing import CliRunner

    from urrlkit.cli import app

    os.environ["COLUMNS"] = "110"  # stable wrapping regardless of the terminal that runs this
    os.environ["NO_COLOR"] = "1"
    commands = ["", "pretrain", "finetune", "eval", "corrupt", "report", "push", "pull", "convert", "recipe",
                "recipe validate", "recipe show"]
    out = ["# CLI reference", "",
           "<!-- generated by docs/gen_recipe_reference.py from `urrl … --help`; do not edit by hand -->", "",
           "Every command reports a user error as one line on stderr and exits with code 2; `urrl --debug …` "
           "shows the traceback instead. A training command stopped by Ctrl-C (SIGINT) or SIGTERM stops at once, "
           "keeps its last checkpoint, says which, and exits with 130 or 143; `--resume` continues from there. "
           "`urrl` sets `OMP_WAIT_POLICY=PASSIVE` and `OMP_NUM_THREADS` unless they are set "
           "(`URRL_THREAD_TUNING=0` turns this off). See docs/reliability.md.", ""]
    runner = CliRunner()
    for cmd in commands:
        result = runner.invoke(app, [*cmd.split(), "--help"], prog_name="urrl", terminal_width=110)
        if result.exit_code != 0:
            raise SystemExit(f"urrl {cmd} --help failed: {result.output}")
        text = "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())
        out += [f"## urrl {cmd}".rstrip(), "", "```text", text, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    pages = {DOCS / "recipes.md": recipe_reference(), DOCS / "cli.md": cli_reference()}
    stale = [p for p, text in pages.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for p in stale:
            print(f"out of date: {p} (run python docs/gen_recipe_reference.py)")
        return 1 if stale else 0
    for p, text in pages.items():
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
