"""``neumat benchmark dask``: ``neumat mesh`` single-process against ``--dask local:N`` on the
same mesh (default 10⁷ vertex points, XDMF/HDF5, 3 input fields and one constant extra).

For each path a fresh child process (``python -m benchmarks.dask_throughput --child …``) reads
the mesh, [starts the LocalCluster of N one-thread workers and connects], evaluates the model on
every point ``--repeats`` times (``evaluate_mesh`` on the mesh in memory: the evaluation alone),
writes the output once, and reports the wall time of each step, points/s of the evaluation, the
peak resident set size (VmHWM) of the driver process and of each Dask worker, and the sha256 of
every output array (the two paths must give the same bytes). Then the whole command
``neumat mesh … [--dask local:N]`` is timed end to end (read + cluster start + evaluation +
write), once per path. Writes ``benchmarks/results/dask_throughput.json`` and, with
``--readme``, the ``dask`` section of benchmarks/README.md.

The model: the ``residual_elu`` net of the latency benchmark (4-R-8-A-4-A-R-1, random weights,
``benchmarks.latency_subjects``), exported to ONNX; onnxruntime with one intra-op thread in every
process (the single-process path uses one core).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import meshio
import numpy as np

from constitutive.jsonio import write_json
from export.onnx_export import export_onnx
from fem_bridge.dask_runner import DEFAULT_TASK_ROWS
from fem_bridge.mesh import DEFAULT_CHUNK, evaluate_mesh
from fem_bridge.mesh_io import read_mesh, write_mesh

from .latency_subjects import in_box_points, residual_elu_net
from .latency_timing import peak_rss_bytes
from .machine import git_state, library_versions, load_now, machine_info
from .readme_sections import BENCHMARKS_README, markers, write_section

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "dask_throughput.json"
FLOW_ARGS = dict(temperature="T", strain_rate="rate", plastic_strain="peeq", extras={"direction": "0"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", type=int, default=10_000_000, help="mesh points (default 10⁷)")
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes, 1 thread each (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="evaluations per path in the child (default 2)")
    p.add_argument("--task-rows", type=int, default=None, help="rows per Dask task (default: neumat's)")
    p.add_argument("--format", choices=["xdmf", "vtu"], default="xdmf", help="mesh file format (default xdmf)")
    p.add_argument("--no-cli", action="store_true", help="skip the end-to-end 'neumat mesh' timings")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON result (default {DEFAULT_OUT})")
    p.add_argument("--readme", action="store_true", help="rewrite the dask section of benchmarks/README.md")


# ---- child: one path, measured from inside -----------------------------------------------------
def _child(spec: dict) -> dict:
    out: dict = {"path": spec["path"]}
    t = time.perf_counter()
    mesh = read_mesh(spec["mesh"])
    out["read_s"] = time.perf_counter() - t
    client = cluster = None
    if spec["path"] == "dask":
        import distributed  # optional: the dask extra
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=spec["workers"], threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster, direct_to_workers=True)
        out["cluster_start_s"] = time.perf_counter() - t
    evals = []
    res = None
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        res, mesh = evaluate_mesh(spec["model"], mesh, None, dask=client, dask_task_rows=spec.get("task_rows"),
                                  **FLOW_ARGS)
        evals.append(time.perf_counter() - t)
        if res.failures:
            raise RuntimeError(res.summary())
    n = res.rows
    out.update(rows=n, evaluate_s=evals, best_points_per_s=n / min(evals), first_points_per_s=n / evals[0])
    out["sha256"] = {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
                     for k, v in sorted(mesh.point_data.items())}
    t = time.perf_counter()
    write_mesh(spec["out_mesh"], mesh)
    out["write_s"] = time.perf_counter() - t
    out["driver_peak_rss_bytes"] = peak_rss_bytes()
    if client is not None:
        out["worker_peak_rss_bytes"] = sorted(client.run(peak_rss_bytes).values())
        client.close()
        cluster.close()
    return out


# ---- parent --------------------------------------------------------------------------------------
def _make_inputs(tmp: Path, n: int, fmt: str) -> tuple[Path, Path]:
    net = residual_elu_net(0)
    model = export_onnx(net, tmp / "residual_elu.onnx")
    x = in_box_points(net, n, seed=3)
    pts = np.random.default_rng(4).random((n, 3))
    mesh = meshio.Mesh(pts, [("vertex", np.arange(n, dtype=np.int64).reshape(-1, 1))],
                       point_data={"peeq": x[:, 0].copy(), "rate": x[:, 1].copy(), "T": x[:, 2].copy()})
    src = tmp / f"cloud.{fmt}"
    write_mesh(src, mesh)
    return Path(model), src


def _run_child(spec: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "benchmarks.dask_throughput", "--child", json.dumps(spec)],
                       capture_output=True, text=True, cwd=HERE.parent)
    if r.returncode != 0:
        raise RuntimeError(f"child {spec['path']} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _run_cli(model: Path, src: Path, out: Path, dask: str | None, task_rows) -> float:
    cmd = [sys.executable, "-m", "constitutive.cli", "mesh", "--model", str(model), "--in", str(src),
           "--out", str(out), "--temperature", "T", "--strain-rate", "rate", "--plastic-strain", "peeq",
           "--extra", "direction=0", "--no-progress"]
    if dask:
        cmd += ["--dask", dask] + (["--dask-task-rows", str(task_rows)] if task_rows else [])
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-4000:]}")
    return wall


def run(args) -> int:
    t0 = time.perf_counter()
    load_before = load_now()
    with tempfile.TemporaryDirectory(prefix="neumat-dask-bench-") as d:
        tmp = Path(d)
        print(f"writing a {args.points}-point {args.format} mesh …", flush=True)
        t = time.perf_counter()
        model, src = _make_inputs(tmp, args.points, args.format)
        mesh_bytes = sum(f.stat().st_size for f in tmp.iterdir() if f.name.startswith("cloud"))
        print(f"  {time.perf_counter() - t:.1f} s, {mesh_bytes / 1e6:.0f} MB", flush=True)
        results = {}
        for path in ("single", "dask"):
            spec = dict(path=path, mesh=str(src), model=str(model), out_mesh=str(tmp / f"out_{path}.{args.format}"),
                        repeats=args.repeats, workers=args.workers, task_rows=args.task_rows)
            print(f"{path}: evaluating …", flush=True)
            results[path] = _run_child(spec)
            r = results[path]
            print(f"  read {r['read_s']:.1f} s, evaluate {', '.join(f'{e:.2f}' for e in r['evaluate_s'])} s "
                  f"({r['best_points_per_s'] / 1e6:.2f} M points/s best), write {r['write_s']:.1f} s, "
                  f"driver peak {r['driver_peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
            for f in tmp.glob("out_*"):
                f.unlink()
        identical = results["single"]["sha256"] == results["dask"]["sha256"]
        cli = {}
        if not args.no_cli:
            for path, spec in (("single", None), ("dask", f"local:{args.workers}")):
                print(f"neumat mesh ({path}) end to end …", flush=True)
                cli[path] = _run_cli(model, src, tmp / f"cli_{path}.{args.format}", spec, args.task_rows)
                print(f"  {cli[path]:.1f} s", flush=True)
                for f in tmp.glob("cli_*"):
                    f.unlink()
    for r in results.values():
        r.pop("sha256")
    doc = dict(
        benchmark="neumat mesh: single process vs Dask LocalCluster",
        points=args.points, mesh_format=args.format, mesh_file_bytes=mesh_bytes,
        model="residual_elu (4-R-8-A-4-A-R-1, benchmarks.latency_subjects), ONNX, onnxruntime 1 thread per process",
        chunk=DEFAULT_CHUNK, dask_task_rows=args.task_rows or DEFAULT_TASK_ROWS, dask_workers=args.workers,
        dask_threads_per_worker=1, outputs_bitwise_identical=identical,
        speedup_evaluation=results["single"]["evaluate_s"] and
        min(results["single"]["evaluate_s"]) / min(results["dask"]["evaluate_s"]),
        results=results, cli_wall_s=cli,
        machine=machine_info(), versions={**library_versions(), **_dask_versions()}, git=git_state(),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        total_s=time.perf_counter() - t0, load_before=load_before, load_after=load_now())
    write_json(args.out, doc)
    print(f"wrote {args.out}; outputs bitwise identical: {identical}")
    if args.readme:
        update_readme(doc)
        print(f"updated {BENCHMARKS_README} ({' … '.join(markers('dask'))})")
    return 0 if identical else 1


def _dask_versions() -> dict:
    out = {}
    for pkg in ("dask", "distributed", "meshio", "h5py"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def readme_section(doc: dict) -> str:
    s, d = doc["results"]["single"], doc["results"]["dask"]
    gb = lambda b: f"{b / 1e9:.2f} GB"
    rows = [("evaluation only, best of " + str(len(s["evaluate_s"])) + ", s",
             f"{min(s['evaluate_s']):.2f}", f"{min(d['evaluate_s']):.2f}"),
            ("evaluation, points/s", f"{s['best_points_per_s'] / 1e6:.2f} M", f"{d['best_points_per_s'] / 1e6:.2f} M"),
            ("reading the mesh, s", f"{s['read_s']:.1f}", f"{d['read_s']:.1f}"),
            ("starting the LocalCluster, s", "–", f"{d['cluster_start_s']:.1f}"),
            ("writing the output, s", f"{s['write_s']:.1f}", f"{d['write_s']:.1f}"),
            ("peak RSS of the driver process", gb(s["driver_peak_rss_bytes"]), gb(d["driver_peak_rss_bytes"])),
            ("peak RSS of each worker", "–", ", ".join(gb(b) for b in d["worker_peak_rss_bytes"]))]
    if doc["cli_wall_s"]:
        rows.append(("`neumat mesh` end to end, s", f"{doc['cli_wall_s']['single']:.1f}",
                     f"{doc['cli_wall_s']['dask']:.1f}"))
    m = doc["machine"]
    lines = ["## Dask: `neumat mesh --dask` against the single process",
             "",
             f"`neumat benchmark dask` (code: `benchmarks/dask_throughput.py`, results: "
             f"`results/dask_throughput.json`). {doc['points']:,} vertex points in one "
             f"{doc['mesh_format'].upper()} file, inputs from 3 point fields and one constant; model "
             f"{doc['model']}; single process: chunks of {doc['chunk']} rows; Dask: a LocalCluster of "
             f"{doc['dask_workers']} worker processes × 1 thread, tasks of {doc['dask_task_rows']} rows. "
             f"Outputs bitwise identical: {'yes' if doc['outputs_bitwise_identical'] else 'NO'}.",
             "", "| | single process | Dask |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, Python {m['python']}, "
                  f"dask/distributed {doc['versions']['distributed']}, onnxruntime {doc['versions']['onnxruntime']}; "
                  f"commit {doc['git'].get('commit', '?')}; {doc['date']}."]
    return "\n".join(lines)


def update_readme(doc: dict, path: Path = BENCHMARKS_README) -> None:
    """Replace the dask section of benchmarks/README.md (appended when the markers are absent)."""
    write_section("dask", readme_section(doc), path, missing="append")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        print(json.dumps(_child(json.loads(argv[1]))))
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.dask_throughput")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
