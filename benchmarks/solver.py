"""``neumat benchmark solver``: does a CalculiX run get slower with neumat's UMAT?

The same deck is solved by ccx 2.20 (``make ccx``) twice: with the generated UMAT of a flow net
(``@ABAQUS_<LIB>``) and with ccx's own ``*ELASTIC`` + ``*PLASTIC`` holding a hardening table of
the *same* network (σ_y(p) sampled at the nominal strain rate and temperature, 200 rows — ccx
2.20 silently goes elastic above 200, ``fortran_umat.ccx_deck.CCX_MAX_PLASTIC_POINTS``). Two decks:

* ``cube``: the homogeneous compression cube of ``fortran_umat.ccx_deck.write_compression_deck``
  (n³ C3D8, three symmetry planes, uniaxial stress everywhere), the deck of ``neumat ccx``;
* ``cylinder``: 1/8 of a cylinder compressed between sticking platens
  (``fortran_umat.ccx_cylinder``): points in different states in the same increment.

Both decks print the same output for both materials (S, E per integration point and RF; no SDV
or PEEQ, which would make the UMAT deck print nine columns more). Both at 1 and 2 threads
(OMP_NUM_THREADS and CCX_NPROC_*), R repeats, UMAT and ``*PLASTIC``
alternating (UMAT first in even repeats, ``*PLASTIC`` first in odd ones) so that a change of the
machine's load hits both alike. Figures per case: median wall time of the ccx process (s) for
each material and their ratio, ccx's own "Total CalculiX Time", Newton iterations, the load.

Where the time goes (unless ``--no-profile``): per deck one more UMAT run on 1 thread through a
counting wrapper (``benchmarks.solver_profile``: UMAT calls, plastic calls, calls with DSTRAN = 0,
nanoseconds inside the UMAT) under ``perf record``, and one ``*PLASTIC`` run under ``perf``:
calls per integration point and Newton iteration, time inside the UMAT, and the sample split of
the ccx process (material, element assembly, results, SPOOLES solver, …).

The model: by default a 4-R-16-A-8-A-R-1 tanh residual net with random weights (the shape of
the demo's trained model; ``benchmarks.latency_subjects.residual_net``, seed 0), or ``--model``
an ONNX file. Units: s, MPa, °C, 1/s, mm.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from export.contract import read_model_info
from export.onnx_export import export_onnx
from fem_bridge.conventions import N_FIXED_PROPS, SV_PDOT, TEMP_MODE_CALCULIX
from fortran_umat.build import build_umat, fflags
from fortran_umat.ccx_compare import onnx_flow_stress
from fortran_umat.ccx_cylinder import write_cylinder_deck
from fortran_umat.ccx_deck import (CCX_MAX_PLASTIC_POINTS, PlasticMaterial, UserMaterial, built_library,
                                   plastic_table, write_compression_deck)
from fortran_umat.ccx_results import CcxError
from fortran_umat.ccx_run import CCX_VERSION, ccx_binary, run_ccx

from . import latency_subjects as subj
from .machine import git_state, library_versions, load_now, machine_info
from .readme_sections import BENCHMARKS_README, write_section
from .solver_profile import perf_split, read_counts, wrapper_env, wrapper_library

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
FORMAT = "neumat-solver/1"
GOAL_RATIO = 1.05
DEMO_SPEC = "4-R-16-A-8-A-R-1"
E_MPA, NU = 1.0e5, 0.3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="4³ cube, a 2,2,3 cylinder, 3 increments, 1 repeat: a smoke test in seconds")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for solver.json (default benchmarks/results)")
    p.add_argument("--model", default=None, metavar="ONNX",
                   help=f"exported model to use (default: the random {DEMO_SPEC} tanh net)")
    p.add_argument("--extras", type=float, nargs="*", default=None,
                   help="values of the model's extra features (default 0 each)")
    p.add_argument("--elements", type=int, default=None, help="cube: C3D8 per edge (default 20: 8000 elements)")
    p.add_argument("--cylinder", default=None, metavar="NCORE,NRING,NZ",
                   help="cylinder O-grid divisions (default 8,6,15: 2400 elements)")
    p.add_argument("--increments", type=int, default=None, help="equal increments (default 10)")
    p.add_argument("--strain", type=float, default=0.5, help="final nominal strain (default 0.5)")
    p.add_argument("--temperature", type=float, default=1150.0, help="°C (default 1150)")
    p.add_argument("--strain-rate", type=float, default=0.1, help="nominal strain rate, 1/s (default 0.1)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma separated (default 1,2)")
    p.add_argument("--repeats", type=int, default=None, help="runs per material and case (default 3)")
    p.add_argument("--decks", default="cube,cylinder", help="decks to run (default cube,cylinder)")
    p.add_argument("--no-profile", action="store_true", help="skip the counting-wrapper and perf runs")
    p.add_argument("--readme", default=None,
                   help="README whose solver section is rewritten (default benchmarks/README.md when --out "
                        "is the default folder, otherwise none)")
    p.add_argument("--no-readme", action="store_true", help="do not touch any README")
    p.add_argument("--timeout", type=float, default=3600.0, help="per ccx run, s (default 3600)")


def _ints(text: str, what: str, n: int | None = None) -> list[int]:
    try:
        v = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise NeumatInputError(f"{what} {text!r}: comma-separated integers expected") from None
    if not v or any(x < 1 for x in v) or (n is not None and len(v) != n):
        raise NeumatInputError(f"{what} {text!r}: {n or 'one or more'} integer(s) >= 1 expected")
    return v


def settings(args) -> dict:
    q = args.quick
    s = dict(elements=args.elements or (4 if q else 20),
             cylinder=_ints(args.cylinder or ("2,2,3" if q else "8,6,15"), "--cylinder", 3),
             increments=args.increments or (3 if q else 10), repeats=args.repeats or (1 if q else 3),
             threads=_ints(args.threads, "--threads"), strain=args.strain, temperature_c=args.temperature,
             strain_rate=args.strain_rate, decks=[d.strip() for d in args.decks.split(",") if d.strip()],
             profile=not args.no_profile, timeout_s=args.timeout)
    bad = [d for d in s["decks"] if d not in ("cube", "cylinder")]
    if bad or not s["decks"]:
        raise NeumatInputError(f"--decks {args.decks!r}: choose from cube, cylinder")
    if not (0 < s["strain"] < 1 and s["strain_rate"] > 0 and np.isfinite(s["temperature_c"])):
        raise NeumatInputError("--strain must be in (0, 1), --strain-rate > 0, --temperature finite")
    return s


def demo_net():
    """The random 4-R-16-A-8-A-R-1 tanh residual net (the demo model's shape)."""
    return subj.residual_net(0, 16, 8, "tanh", DEMO_SPEC)


def _write_decks(name: str, folder: Path, st: dict, umat: UserMaterial, plastic: PlasticMaterial) -> dict:
    common = dict(temperature_c=st["temperature_c"], strain_rate=st["strain_rate"])
    out = {}
    for kind, mat in (("umat", umat), ("plastic", plastic)):
        path = folder / name / f"{name}_{kind}.inp"
        if name == "cube":
            d = write_compression_deck(path, material=mat, final_true_strain=st["strain"],
                                       n_increments=st["increments"], side_mm=10.0, n_elem=st["elements"],
                                       state_output=False, **common)
            out[kind] = dict(path=d.path, elements=d.n_elem ** 3)
        else:
            nc, nr, nz = st["cylinder"]
            d = write_cylinder_deck(path, material=mat, final_strain=st["strain"], n_increments=st["increments"],
                                    n_core=nc, n_ring=nr, n_z=nz, state_output=False, **common)
            out[kind] = dict(path=d.path, elements=d.n_elements)
    return out


def _summary(res, n_ip: int) -> dict:
    att = res.attempts
    tot = None
    for line in res.stdout.splitlines():
        if "Total CalculiX Time" in line:
            try:
                tot = float(line.split(":")[1])
            except (IndexError, ValueError):
                pass
    last = res.increments[-1] if res.increments else None
    s33 = float(last.stress[:, 2].mean()) if last is not None and last.stress is not None else None
    rf = float(last.rf_total[2]) if last is not None and last.rf_total is not None else None
    return dict(wall_s=round(res.wall_s, 3), ccx_total_s=tot, attempts=len(att),
                converged_increments=sum(1 for a in att if a[3]), iterations=int(sum(a[2] for a in att)),
                final_mean_s33_MPa=s33, final_rf_z_N=rf, integration_points=n_ip)


def _one_run(deck: dict, kind: str, threads: int, lib_dir: Path | None, st: dict, **kw):
    wd = deck["path"].parent / f"t{threads}_{kind}"
    return run_ccx(deck["path"], workdir=wd, library_dir=lib_dir if kind == "umat" else None,
                   threads=threads, timeout_s=st["timeout_s"], **kw)


def _median(v):
    v = [x for x in v if x is not None]
    return float(statistics.median(v)) if v else None


def run_cases(decks: dict, lib_dir: Path, st: dict, log=print) -> list[dict]:
    cases = []
    for name, dk in decks.items():
        n_ip = 8 * dk["umat"]["elements"]
        for threads in st["threads"]:
            runs = {"umat": [], "plastic": []}
            for r in range(st["repeats"]):
                order = ("umat", "plastic") if r % 2 == 0 else ("plastic", "umat")
                for kind in order:
                    load1 = load_now()["loadavg_1_5_15"][0]
                    res = _one_run(dk[kind], kind, threads, lib_dir, st)
                    s = _summary(res, n_ip)
                    s["load_1min_before"] = load1
                    s["repeat"] = r
                    runs[kind].append(s)
                    log(f"[solver] {name} {threads} thread(s) {kind:7s} repeat {r + 1}: {s['wall_s']:.2f} s, "
                        f"{s['iterations']} iterations, load {load1}")
            u, p = (_median([x["wall_s"] for x in runs[k]]) for k in ("umat", "plastic"))
            fu, fp = runs["umat"][-1], runs["plastic"][-1]
            if name == "cube":
                agree = abs(fu["final_mean_s33_MPa"] / fp["final_mean_s33_MPa"] - 1.0)
                agree_what = "final mean axial stress"
            else:
                agree = abs(fu["final_rf_z_N"] / fp["final_rf_z_N"] - 1.0)
                agree_what = "final platen force"
            cases.append(dict(deck=name, elements=dk["umat"]["elements"], integration_points=n_ip, threads=threads,
                              umat_s=round(u, 3), plastic_s=round(p, 3), ratio=round(u / p, 4),
                              goal_ratio=GOAL_RATIO, reached=bool(u / p <= GOAL_RATIO),
                              umat_ccx_total_s=_median([x["ccx_total_s"] for x in runs["umat"]]),
                              plastic_ccx_total_s=_median([x["ccx_total_s"] for x in runs["plastic"]]),
                              umat_iterations=fu["iterations"], plastic_iterations=fp["iterations"],
                              umat_attempts=fu["attempts"], plastic_attempts=fp["attempts"],
                              agreement=dict(what=agree_what, relative_difference=agree),
                              runs=runs))
    return cases


def profile_deck(name: str, dk: dict, built, st: dict, workdir: Path, log=print) -> dict:
    """One counted UMAT run and one *PLASTIC run, both under perf, on 1 thread."""
    n_ip = 8 * dk["umat"]["elements"]
    wlib, wname = wrapper_library(built.library, SV_PDOT)
    text = dk["umat"]["path"].read_text()
    lib_name = built_library(built)[1].upper()
    pdeck = dk["umat"]["path"].with_name(f"{name}_umat_profiled.inp")
    pdeck.write_text(text.replace(f"@ABAQUS_{lib_name}", f"@ABAQUS_{wname}"))
    counts_file = workdir / f"{name}-umat-counts.json"
    counts_file.unlink(missing_ok=True)
    out: dict = {}
    box: dict = {}

    def run_umat(prefix):
        box["res"] = run_ccx(pdeck, workdir=pdeck.parent / "profile_umat", library_dir=wlib.parent, threads=1,
                             timeout_s=st["timeout_s"], env=wrapper_env(built.library, counts_file), prefix=prefix)

    log(f"[solver] {name}: profiled UMAT run (counting wrapper + perf)")
    split = perf_split(run_umat, workdir, f"{name}-umat")
    if "res" not in box:                       # perf unusable: the counted run without it
        run_umat(())
    res = box["res"]
    c = read_counts(counts_file)
    s = _summary(res, n_ip)
    if c:
        inside = max(c["ns_inside"] - c["calls"] * c["timer_ns_per_call"], 0.0) * 1e-9
        c.update(inside_s=round(inside, 4), per_call_s=inside / max(c["calls"], 1),
                 calls_per_point_per_iteration=c["calls"] / (n_ip * max(s["iterations"], 1)),
                 calls_per_point_per_attempt=c["calls"] / (n_ip * max(s["attempts"], 1)),
                 plastic_share=c["plastic_calls"] / max(c["calls"], 1),
                 share_of_profiled_wall=inside / res.wall_s)
    out["umat"] = dict(run=s, counts=c, perf=split)
    log(f"[solver] {name}: *PLASTIC run under perf")
    box2: dict = {}

    def run_plastic(prefix):
        box2["res"] = run_ccx(dk["plastic"]["path"], workdir=dk["plastic"]["path"].parent / "profile_plastic",
                              threads=1, timeout_s=st["timeout_s"], prefix=prefix)

    split2 = perf_split(run_plastic, workdir, f"{name}-plastic")
    out["plastic"] = dict(run=_summary(box2["res"], n_ip) if "res" in box2 else None, perf=split2)
    return out


def run(args) -> int:
    st = settings(args)
    ccx_binary()                                       # the `make ccx` hint before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before, git_before = load_now(), git_state()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neumat-solver-") as tmp:
        tmp = Path(tmp)
        if args.model:
            onnx_path = Path(args.model)
            if not onnx_path.is_file():
                raise NeumatInputError(f"--model {onnx_path}: file not found (export one with `neumat export`)")
            model_desc = dict(source=str(onnx_path))
        else:
            onnx_path = tmp / "model.onnx"
            export_onnx(demo_net(), onnx_path)
            model_desc = dict(source=f"random {DEMO_SPEC} tanh residual net, seed 0 "
                                     "(benchmarks.latency_subjects.residual_net)")
        info = read_model_info(onnx_path)
        n_extras = info.n_features - 3
        extras = list(args.extras) if args.extras is not None else [0.0] * n_extras
        if len(extras) != n_extras:
            raise NeumatInputError(f"--extras: the model takes {n_extras} extra feature value(s), got {len(extras)}")
        model_desc.update(spec=info.metadata.get("spec"), feature_names=info.feature_names, extras=extras,
                          sha256=info.sha256)
        built = build_umat(onnx_path)
        lib_path, lib_name = built_library(built)
        props = [E_MPA, NU, float(TEMP_MODE_CALCULIX), 0.0] + extras
        assert len(props) == N_FIXED_PROPS + n_extras
        umat = UserMaterial(lib_name, props, built.nstatv)
        p_max = float(info.box_hi[0])
        table = plastic_table(onnx_flow_stress(onnx_path), st["strain_rate"], st["temperature_c"], p_max=p_max,
                              n_points=CCX_MAX_PLASTIC_POINTS, extras=extras)
        plastic = PlasticMaterial(E_MPA, NU, table)
        decks = {name: _write_decks(name, tmp, st, umat, plastic) for name in st["decks"]}
        try:
            cases = run_cases(decks, lib_path.parent, st)
            profiles = ({name: profile_deck(name, dk, built, st, tmp) for name, dk in decks.items()}
                        if st["profile"] else {})
        except CcxError as exc:
            raise NeumatInputError(f"ccx failed during the solver benchmark: {exc}") from exc
    for name, pr in profiles.items():
        c = pr["umat"].get("counts")
        one = [k for k in cases if k["deck"] == name and k["threads"] == min(st["threads"])]
        if c and one:
            k = one[0]
            c["share_of_timed_umat_run"] = c["inside_s"] / k["umat_s"]
            c["ratio_without_umat_time"] = (k["umat_s"] - c["inside_s"]) / k["plastic_s"]
            c["timed_threads"] = k["threads"]
    doc = dict(format=FORMAT, quick=bool(args.quick),
               date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               machine=machine_info(), versions=dict(library_versions(), ccx=CCX_VERSION), git=git_before,
               load=dict(before=load_before, after=load_now()), wall_time_s=round(time.perf_counter() - t0, 1),
               settings={k: v for k, v in st.items()}, model=model_desc,
               materials=dict(E_MPa=E_MPA, nu=NU, plastic_rows=len(table), plastic_p_max=p_max,
                              umat_library=f"lib{lib_name}.so", umat_flags=fflags()),
               method=("wall clock of the ccx process (time.perf_counter around the subprocess); UMAT and *PLASTIC "
                       "alternate within each repeat (UMAT first in even repeats); medians over the repeats; "
                       "ratio = umat_s / plastic_s"),
               cases=cases, profiles=profiles)
    write_json(out / "solver.json", doc, nonfinite="null")
    readme = None if args.no_readme else (Path(args.readme) if args.readme else
                                           (BENCHMARKS_README if out.resolve() == DEFAULT_OUT.resolve() else None))
    if readme is not None:
        write_section("solver", readme_text(doc), readme, missing="append")
    print(f"[solver] wrote {out / 'solver.json'}" + (f" and the solver section of {readme}" if readme else ""))
    for c in cases:
        print(f"  {c['deck']:>8} {c['elements']:6d} C3D8, {c['threads']} thread(s): UMAT {c['umat_s']:.2f} s, "
              f"*PLASTIC {c['plastic_s']:.2f} s, ratio {c['ratio']:.3f} "
              f"({'reached' if c['reached'] else 'MISSED'} ≤ {GOAL_RATIO})")
    return 0


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def readme_text(doc: dict) -> str:
    """The solver section of benchmarks/README.md."""
    st, m = doc["settings"], doc["machine"]
    lines = ["## CalculiX: the generated UMAT against `*PLASTIC` (same network)", "",
             "`neumat benchmark solver` (code: `benchmarks/solver.py`, results: `results/solver.json`). "
             f"ccx {doc['versions'].get('ccx')} built by `make ccx`; model {doc['model']['source']}; "
             f"{st['increments']} equal increments to nominal strain {st['strain']} at {st['strain_rate']} 1/s, "
             f"{st['temperature_c']} °C, small strain; `*PLASTIC` holds {doc['materials']['plastic_rows']} rows of the "
             f"same network's σ_y(p) at that rate and temperature (p up to {doc['materials']['plastic_p_max']:g}). "
             "Decks: `cube` = the homogeneous compression cube of `neumat ccx`; `cylinder` = 1/8 of a cylinder "
             "between sticking platens (`fortran_umat/ccx_cylinder.py`); the same output requests for both "
             "materials (S, E, RF). Wall time of the ccx process, median of "
             f"{st['repeats']} runs, UMAT and `*PLASTIC` alternating.", "",
             "| deck | C3D8 | threads | UMAT, s | `*PLASTIC`, s | ratio | goal ≤ 1.05 | Newton iterations UMAT / `*PLASTIC` "
             "| agreement |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in doc["cases"]:
        lines.append(f"| {c['deck']} | {c['elements']} | {c['threads']} | {c['umat_s']:.2f} | {c['plastic_s']:.2f} | "
                     f"{c['ratio']:.3f} | {'reached' if c['reached'] else '**missed**'} | "
                     f"{c['umat_iterations']} / {c['plastic_iterations']} | "
                     f"{c['agreement']['what']} {c['agreement']['relative_difference']:.1e} |")
    for name, pr in doc.get("profiles", {}).items():
        cnt = pr["umat"].get("counts")
        lines += ["", f"**Where the time goes, {name}** (1 thread; a UMAT run through the counting wrapper of "
                  "`benchmarks/solver_profile.py` under `perf record`, and a `*PLASTIC` run under `perf`):", ""]
        if cnt:
            lines.append(f"- UMAT: {cnt['calls']:,} calls ({_pct(cnt['plastic_share'])} plastic, "
                         f"{cnt['zero_dstran_calls']:,} with DSTRAN = 0) = {cnt['calls_per_point_per_iteration']:.2f} "
                         f"calls per integration point and Newton iteration "
                         f"({cnt['calls_per_point_per_attempt']:.2f} per point and increment attempt); "
                         f"{cnt['inside_s']:.2f} s inside the UMAT = {cnt['per_call_s'] * 1e6:.2f} µs per call"
                         + (f", {_pct(cnt['share_of_timed_umat_run'])} of the timed UMAT run on "
                            f"{cnt['timed_threads']} thread(s); without that time the ratio would be "
                            f"{cnt['ratio_without_umat_time']:.2f}" if "share_of_timed_umat_run" in cnt else "") + ".")
        for kind, label in (("umat", "UMAT run"), ("plastic", "`*PLASTIC` run")):
            pf = pr[kind].get("perf")
            if pf:
                parts = ", ".join(f"{k} {_pct(v)}" for k, v in pf["categories"].items() if v >= 0.01)
                lines.append(f"- {label}, perf samples: {parts}.")
    load = doc["load"]
    lines += ["", f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores; load (1/5/15 min) "
              f"{load['before']['loadavg_1_5_15']} before, {load['after']['loadavg_1_5_15']} after (per-run 1-minute "
              f"load in the JSON); gfortran {doc['versions'].get('gfortran')}; commit "
              f"{(doc['git'].get('commit') or '?')[:10]}{' (modified files)' if doc['git'].get('modified_files') else ''}; "
              f"{doc['date']}."]
    return "\n".join(lines)
