"""Files we did not write, table-driven: a config.json, a safetensors file, a pulled repo's card or config, a
results.json or RobustBench model-info file that is too large, nested too deep, holds a huge integer, is not
UTF-8, or whose weights are relabelled or not finite. Every case ends with exit code 2, exactly one line on
stderr that starts with "error:" and names the file (and the tensor, where one is at fault), no traceback, and
nothing on disk changed (for `urrl pull`, outside the Hugging Face cache the download itself fills).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import clean_error
import huggingface_hub.constants  # noqa: F401  # imported here, not first under an eval case's HF_HUB_OFFLINE=1
import pytest
import torch
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
from standin_hub import StandinHub

from urrlkit.engine.untrusted import MAX_JSON_BYTES

DEEP = b"[" * 100_000 + b"]" * 100_000  # past the C parser's recursion limit: RecursionError inside json
NESTED = b'{"kind": ' + b"[" * 100 + b"]" * 100 + b"}"  # parses, but deeper than MAX_DEPTH
HUGE_INT = b'{"kind": "classifier", "num_classes": 1' + b"0" * 5000 + b"}"
LATIN1 = '{"kind": "classifier", "note": "mod\u00e8le"}'.encode("latin-1")
UTF16 = '{"kind": "classifier"}'.encode("utf-16")
SURROGATE = b'{"kind": "\\ud800"}'
TOO_LARGE = b"{" + b" " * MAX_JSON_BYTES + b"}"


def expect_clean_error(root: Path, args: list[str], names: list[str], skip: str | None = None) -> None:
    """tests/clean_error.py's check, with the line under 600 characters."""
    clean_error.expect_clean_error(root, args, names, max_len=600, skip=skip)


# ------------------------------------------------------------------------------------------ models
def _model(tmp: Path, fill: Callable[[torch.nn.Module], None] | None = None) -> Path:
    from urrlkit.hub import save_model
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 10)
    if fill is not None:
        with torch.no_grad():
            fill(model)
    return save_model(model, tmp / "m")


def _config(data: bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        d = _model(tmp)
        (d / "config.json").write_bytes(data)
        return str(d)
    return make


def relabel(data: bytes, src: str = "F32", dst: str = "I32") -> bytes:
    """A safetensors file with every `src` tensor's header dtype set to `dst` (the bytes unchanged)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    for key, entry in header.items():
        if key != "__metadata__" and entry["dtype"] == src:
            entry["dtype"] = dst
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    return len(blob).to_bytes(8, "little") + blob + data[8 + n:]


def _relabelled(tmp: Path) -> str:
    d = _model(tmp)
    (d / "model.safetensors").write_bytes(relabel((d / "model.safetensors").read_bytes()))
    return str(d)


def _all_nan(tmp: Path) -> str:
    def fill(m: torch.nn.Module) -> None:
        for p in m.parameters():
            p.fill_(math.nan)
    return str(_model(tmp, fill))


def _one_inf(tmp: Path) -> str:
    def fill(m: torch.nn.Module) -> None:
        m.head.weight[0, 0] = math.inf
    return str(_model(tmp, fill))


def _lone_file(blob: str | None) -> Callable[[Path], str]:
    """A .safetensors file without config.json beside it: its metadata config is what loads it."""
    def make(tmp: Path) -> str:
        from safetensors.torch import load_file, save_file

        d = _model(tmp)
        state = load_file(str(d / "model.safetensors"))
        out = tmp / "lone" / "weights.safetensors"
        out.parent.mkdir()
        save_file(state, str(out), {"format": "pt", **({"urrlkit_config": blob} if blob is not None else {})})
        return str(out)
    return make


# (label, build → model argument, texts the error line must contain)
EVAL_CASES: list[tuple[str, Callable[[Path], str], list[str]]] = [
    ("config too large", _config(TOO_LARGE), ["config.json", "larger than 16 MiB"]),
    ("config nested past recursion", _config(DEEP), ["config.json", "nested deeper"]),
    ("config nested deep", _config(NESTED), ["config.json", "nested deeper"]),
    ("config huge integer", _config(HUGE_INT), ["config.json", "5001 digits"]),
    ("config latin-1", _config(LATIN1), ["config.json", "not UTF-8"]),
    ("config utf-16", _config(UTF16), ["config.json", "not UTF-8"]),
    ("config lone surrogate", _config(SURROGATE), ["config.json", "surrogate"]),
    ("config binary", _config(bytes(range(256))), ["config.json"]),
    ("weights F32 relabelled I32", _relabelled, ["model.safetensors", "I32", "floating-point"]),
    ("weights all NaN", _all_nan, ["model.safetensors", "NaN or infinite"]),
    ("weights one inf", _one_inf, ["model.safetensors", "tensor fc.weight", "1 of 320"]),
    ("metadata config nested", _lone_file("[" * 100_000), ["weights.safetensors", "nested deeper"]),
    ("metadata config malformed", _lone_file("{not json"), ["weights.safetensors", "malformed JSON"]),
    ("metadata config huge integer", _lone_file('{"num_classes": 1' + "0" * 5000 + "}"),
     ["weights.safetensors", "5001 digits"]),
    ("metadata config a list", _lone_file("[1]"), ["weights.safetensors", "JSON object"]),
]


@pytest.mark.parametrize(("label", "make", "names"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_bad_model_file_is_rejected_by_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str,
                                            make: Callable[[Path], str], names: list[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = make(tmp_path)
    expect_clean_error(tmp_path, ["eval", name, "--out", str(tmp_path / "eval-out")], names)


# ------------------------------------------------------------------------------------------ pulled repos
def _repo_files(tmp: Path) -> dict[str, bytes]:
    d = _model(tmp)
    return {"model.safetensors": (d / "model.safetensors").read_bytes(),
            "config.json": (d / "config.json").read_bytes()}


def _front_matter(n_bytes: int) -> bytes:
    tags = "".join(f"- tag{i:08d}\n" for i in range(n_bytes // 14 + 1))
    return f"---\nlicense: mit\ntags:\n{tags}---\n# card\n".encode()


PULL_CASES: list[tuple[str, dict[str, bytes], list[str]]] = [
    ("card 10 MB front matter", {"README.md": _front_matter(10 << 20)}, ["README.md", "larger than 1 MiB"]),
    ("card 200 kB front matter", {"README.md": _front_matter(200 << 10)}, ["README.md", "front matter"]),
    ("card latin-1", {"README.md": "---\nlicense: mit\n---\nmod\u00e8le\n".encode("latin-1")},
     ["README.md", "not UTF-8"]),
    ("card yaml nested", {"README.md": b"---\nlicense: " + b"[" * 100_000 + b"\n---\n"}, ["README.md"]),
    ("config malformed", {"config.json": b"{not json"}, ["config.json", "malformed JSON"]),
    ("config a list", {"config.json": b"[1, 2]"}, ["config.json", "JSON object"]),
    ("config nested", {"config.json": DEEP}, ["config.json", "nested deeper"]),
    ("config huge integer", {"config.json": HUGE_INT}, ["config.json", "5001 digits"]),
]


@pytest.mark.parametrize(("label", "files", "names"), PULL_CASES, ids=[c[0] for c in PULL_CASES])
def test_bad_hub_content_is_rejected_by_pull(tmp_path: Path, standin_hub: StandinHub, hf_env: Path, label: str,
                                             files: dict[str, bytes], names: list[str]) -> None:
    disable_progress_bars()  # the client's download bar is on stderr too; the error must be its only line
    try:
        _pull(tmp_path, standin_hub, hf_env, files, names)
    finally:
        enable_progress_bars()


def _pull(tmp_path: Path, standin_hub: StandinHub, hf_env: Path, files: dict[str, bytes], names: list[str]) -> None:
    standin_hub.seed("org/bad", {**_repo_files(tmp_path / "src"), **files})
    expect_clean_error(tmp_path, ["pull", "org/bad"], names, skip=hf_env.name)


# ------------------------------------------------------------------------------------------ results files
def _results(data: bytes, name: str = "results.json") -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        run = tmp / "run" / "eval"
        run.mkdir(parents=True)
        (run / name).write_bytes(data)
        return str(tmp / "run") if name == "results.json" else str(run / name)
    return make


REPORT_CASES: list[tuple[str, Callable[[Path], str], list[str]]] = [
    ("results too large", _results(TOO_LARGE), ["results.json", "larger than 16 MiB"]),
    ("results nested past recursion", _results(DEEP), ["results.json", "nested deeper"]),
    ("results nested deep", _results(b'{"metrics": {"clean": ' + b"[" * 80 + b"]" * 80 + b"}}"),
     ["results.json", "nested deeper"]),
    ("results huge integer", _results(b'{"metrics": {"clean": {"n": 1' + b"0" * 5000 + b"}}}"),
     ["results.json", "5001 digits"]),
    ("results latin-1", _results('{"metrics": {}, "model": "mod\u00e8le"}'.encode("latin-1")),
     ["results.json", "not UTF-8"]),
    ("results malformed", _results(b'{"metrics": '), ["results.json", "malformed JSON"]),
    ("results a list", _results(b"[]"), ["results.json", "metrics"]),
    ("robustbench huge integer", _results(b'{"dataset": "cifar10", "clean_acc": 1' + b"0" * 5000 + b"}",
                                          "Standard.json"), ["Standard.json", "5001 digits"]),
    ("robustbench latin-1", _results('{"dataset": "cifar10", "name": "\u00e9"}'.encode("latin-1"),
                                     "Standard.json"), ["Standard.json", "not UTF-8"]),
]


@pytest.mark.parametrize(("label", "make", "names"), REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_bad_results_file_is_rejected_by_report(tmp_path: Path, label: str, make: Callable[[Path], str],
                                                names: list[str]) -> None:
    run = make(tmp_path)
    expect_clean_error(tmp_path, ["report", run, "--out", str(tmp_path / "report")], names)
