"""Wall time of `urrl --help` and `urrl recipe validate recipes/urrl.toml`, each in a fresh process.

    python benchmarks/cli_startup.py [--repeats 7]

Each command runs `repeats` times (after one warm-up run that fills the OS file cache); the median, min and
max wall times go to benchmarks/results/cli_startup.json with the machine's load average, since on a shared
machine the numbers move with the load. A third probe records whether each command imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "help": ["--help"],
    "recipe_validate": ["recipe", "validate", str(ROOT / "recipes" / "urrl.toml")],
}
PROBE = ("import sys, runpy; sys.argv = ['urrl', *{args!r}]\n"
         "try:\n    runpy.run_module('urrlkit.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")


def time_once(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "urrlkit.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def imports_torch(args: list[str]) -> bool:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, cwd=ROOT)
    return proc.stderr.strip().splitlines()[-1] == "TORCH"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup.json")
    a = ap.parse_args()
    results = {}
    for name, args in COMMANDS.items():
        time_once(args)  # warm-up: file cache
        times = [time_once(args) for _ in range(a.repeats)]
        results[name] = {"command": "urrl " + " ".join(args).replace(str(ROOT) + "/", ""),
                         "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                         "max_s": round(max(times), 3), "repeats": a.repeats, "imports_torch": imports_torch(args)}
        print(f"{results[name]['command']}: median {results[name]['median_s']} s "
              f"(min {results[name]['min_s']}, max {results[name]['max_s']}), "
              f"imports torch: {results[name]['imports_torch']}")
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "load_average_1m": round(os.getloadavg()[0], 2)},
           "results": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
