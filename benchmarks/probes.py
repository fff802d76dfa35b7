"""Short measured probes: several `draw-service train` recipes for the same few minutes each, side by side,
one thread per run, to choose an hour's recipe (as the MNIST recipe was chosen, README "Results").

    python -m benchmarks.probes --set cifar10 --minutes 8 --out bench-out/probes/cifar10
    python -m benchmarks.probes --set cifar10 --only scale-T16 mixture-K3 ...

Each probe evaluates on a held-out validation split (every 10th training image), never the test split, so
choosing by it leaves the test split for the final number. Before the timed runs, each probe's compiled
graphs are built once in a throwaway 2-step run, so the timed minutes are training, not compilation, for
every probe alike. Writes `<out>/<probe>.log`, `<out>/probes.json` and a Markdown table `<out>/probes.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import machine, say

# --epochs only has to outlast the time limit: the rate is constant after its warm-up
_COLOUR = ["--dataset", "cifar10", "--validation-stride", "10", "--epochs", "1000", "--T", "12", "--z-size", "32",
           "--read-n", "6", "--write-n", "8", "--lr", "2e-3", "--warmup-steps", "100", "--compile",
           "--compile-steps", "4", "--eval-every", "200", "--no-wandb", "--quiet"]


def _with(base: list[str], **flags: Any) -> list[str]:
    """`base` with each `--flag value` replaced or appended (True: a bare flag; False: its --no- form)."""
    argv = list(base)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        for old in (flag, "--no-" + flag[2:]):
            if old in argv:
                i = argv.index(old)
                del argv[i : i + (1 if i + 1 == len(argv) or argv[i + 1].startswith("--") else 2)]
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


# The paper's MNIST model without attention, at the attention hour's rate: does the KL warm-up help here too?
_MNIST_NO_ATTENTION = ["--dataset", "mnist", "--no-attention", "--validation-stride", "10", "--test-limit", "1000",
                       "--epochs", "1000", "--lr", "4e-3", "--warmup-steps", "200", "--compile", "--compile-steps", "4",
                       "--eval-every", "100", "--no-wandb", "--quiet"]

SETS: dict[str, dict[str, list[str]]] = {
    "cifar10": {
        # the likelihood, on the shipped model's architecture
        "logistic": _with(_COLOUR, likelihood="logistic"),
        "scale": _with(_COLOUR, likelihood="logistic-scale"),
        "mixture-K5": _with(_COLOUR, likelihood="logistic-mixture", mixtures=5),
        "mixture-K3": _with(_COLOUR, likelihood="logistic-mixture", mixtures=3),
        # then the architecture and the rate, with the per-pixel scale (the fastest of the new ones)
        "scale-T16-z64": _with(_COLOUR, likelihood="logistic-scale", T=16, z_size=64),
        "scale-lr4e-3": _with(_COLOUR, likelihood="logistic-scale", lr="4e-3"),
        "scale-write12": _with(_COLOUR, likelihood="logistic-scale", read_n=8, write_n=12),
        "scale-hidden512": _with(_COLOUR, likelihood="logistic-scale", enc_size=512, dec_size=512),
        "scale-no-attention": _with(_COLOUR, likelihood="logistic-scale", attention=False),
        "scale-klw": _with(_COLOUR, likelihood="logistic-scale", kl_warmup_steps=400),
    },
    "mnist-no-attention": {
        "lr4e-3": _MNIST_NO_ATTENTION,
        "lr4e-3-klw600": _with(_MNIST_NO_ATTENTION, kl_warmup_steps=600),
    },
}


def _final_metrics(out: Path) -> dict[str, Any]:
    from draw_service import storage
    from draw_service.run_dir import RunDir

    run = RunDir(str(out))
    names = storage.list_dir(run.metrics)
    return json.loads(storage.read_bytes(run.metrics.join(sorted(names)[-1]))) if names else {}


def _launch(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one core per probe
    cmd = [sys.executable, "-m", "draw_service.cli", "train", *argv]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)


def _in_waves(jobs: list[tuple[str, list[str], Path]], parallel: int) -> dict[str, int]:
    """Run `(name, argv, log)` jobs `parallel` at a time; their exit codes."""
    codes, queue, running = {}, list(jobs), {}
    while queue or running:
        while queue and len(running) < parallel:
            name, argv, log = queue.pop(0)
            running[name] = _launch(argv, log)
        time.sleep(2)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                codes[name] = proc.returncode
                del running[name]
    return codes


def run_probes(names: list[str], recipes: dict[str, list[str]], minutes: float, out: Path,
               parallel: int) -> dict[str, Any]:
    from draw_service import storage

    out.mkdir(parents=True, exist_ok=True)
    say(f"probes: {len(names)} x {minutes:g} minutes, {parallel} at a time, 1 thread each -> {out}")
    warm = [(n, _with(recipes[n], steps=2, eval_every=2, out=str(out / "warm" / n)), out / f"{n}.warm.log")
            for n in names]
    for n in names:
        storage.delete(str(out / "warm" / n))
    _in_waves(warm, parallel)  # compile once; the timed runs find their graphs in Inductor's cache
    timed = []
    for n in names:
        storage.delete(str(out / n))
        timed.append((n, [*recipes[n], "--train-time-limit", f"{minutes:g}", "--out", str(out / n)], out / f"{n}.log"))
    codes = _in_waves(timed, parallel)
    rows = {}
    for n in names:
        final = _final_metrics(out / n)
        rows[n] = {"command": "draw-service train " + shlex.join(recipes[n]), "rc": codes[n],
                   **{k: final.get(k) for k in ("step", "epoch", "train_minutes", "images_per_s", "nll_bound",
                                                "bits_per_dim", "eval_recon", "eval_kl", "eval_split")}}
        say(f"  {n}: rc {codes[n]}, {final.get('bits_per_dim')} bits/dim at step {final.get('step')}")
    return {"machine": machine(), "minutes": minutes, "parallel": parallel, "threads_per_probe": 1, "probes": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['minutes']:g}-minute probes, {result['parallel']} at a time, 1 thread each, on "
             f"{result['machine']['cpu']} ({result['machine']['cores']} cores); validation split", "",
             "| probe | steps | epochs | images/s | bound (nats) | KL (nats) | bits/dim |",
             "|---|---|---|---|---|---|---|"]
    for name, r in sorted(result["probes"].items(), key=lambda kv: kv[1]["bits_per_dim"] or 99):
        if r["bits_per_dim"] is None:
            lines.append(f"| {name} | failed (rc {r['rc']}) | | | | | |")
            continue
        lines.append(f"| {name} | {r['step']} | {r['epoch']:.1f} | {r['images_per_s']:.0f} | {r['nll_bound']:.0f} | "
                     f"{r['eval_kl']:.0f} | **{r['bits_per_dim']:.3f}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=sorted(SETS), default="cifar10")
    p.add_argument("--only", nargs="+", help="these probes of the set (default: all)")
    p.add_argument("--minutes", type=float, default=8.0, help="training minutes per probe")
    p.add_argument("--parallel", type=int, default=2, help="probes at a time (one core each)")
    p.add_argument("--out", default=None, help="default bench-out/probes/<set>")
    a = p.parse_args(argv)
    recipes = SETS[a.set]
    names = a.only or list(recipes)
    unknown = [n for n in names if n not in recipes]
    if unknown:
        p.error(f"unknown probe(s) {', '.join(unknown)}; the {a.set} set has {', '.join(recipes)}")
    out = Path(a.out or f"bench-out/probes/{a.set}")
    result = run_probes(names, recipes, a.minutes, out, a.parallel)
    old = json.loads((out / "probes.json").read_text()) if (out / "probes.json").exists() else {}
    if old.get("minutes") == a.minutes:  # a later wave of the same set adds its rows
        result["probes"] = {**old["probes"], **result["probes"]}
    (out / "probes.json").write_text(json.dumps(result, indent=2))
    (out / "probes.md").write_text(table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
