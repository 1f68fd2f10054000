"""The commands of fortran_umat: ``neumat umat`` (the Fortran UMAT generated from an ONNX model,
compiled, optionally verified against the Python bridge) and ``neumat ccx`` (that UMAT in a
CalculiX compression test, optionally compared with ccx's ``*PLASTIC`` and the Python bridge).
``register`` is the ``neumat.commands`` entry point (pyproject.toml). Units: MPa, 1/s, °C, s, mm."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from export.contract import read_model_info
from fem_bridge.conventions import N_FIXED_PROPS, TEMP_MODE_CALCULIX, check_material
from fem_bridge.mesh_io import check_writable_folder

from .build import build_umat
from .ccx_compare import bridge_update, onnx_flow_stress, relative_difference, uniaxial_stress_path
from .ccx_deck import PlasticMaterial, UserMaterial, built_library, plastic_table, write_compression_deck
from .ccx_run import CCX_VERSION, ccx_binary, run_ccx
from .cli_casting import add_casting_parser
from .verify import verify_umat


def register(sub) -> None:
    """Add the ``umat`` and ``ccx`` parsers to the ``neumat`` subparsers ``sub``."""
    p = sub.add_parser(
        "umat", help="generate and compile the Fortran UMAT (Abaqus/CalculiX) from an ONNX model",
        description="Translate the ONNX flow-stress model to Fortran 2008 (flow stress + J2 return "
                    "mapping + Abaqus UMAT), compile it with gfortran into lib<NAME>.so (cached by the "
                    "model's hash under ${NEUMAT_CACHE:-~/.cache/neumat}/umat) and print the library "
                    "path and a *MATERIAL snippet. Units: MPa, 1/s, °C, s.",
        epilog="example:  neumat umat runs/demo/model.onnx --out runs/demo/umat --verify")
    p.add_argument("model", help="model.onnx written by `neumat export`")
    p.add_argument("--out", required=True, help="folder for the .f90, the library and material.inp")
    p.add_argument("--name", default=None,
                   help="material name: the deck's @ABAQUS_<NAME> and lib<NAME>.so (letters and digits, "
                        "starting with a letter, upper-cased); default from the model file name "
                        "(dz411.onnx -> DZ411; model.onnx takes its folder's name), so a retrained model "
                        "keeps it")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached library is current")
    p.add_argument("--E", dest="E", type=float, default=1.5e5,
                   help="Young's modulus for material.inp, MPa (PROPS(1); default 1.5e5; checked > 0)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio for material.inp (PROPS(2); default 0.3)")
    p.add_argument("--temp-mode", type=int, choices=[0, 1], default=TEMP_MODE_CALCULIX,
                   help="PROPS(3): 0 Abaqus (T_end = TEMP + DTEMP), 1 CalculiX (T_end = TEMP; default). "
                        "TEMP in °C either way")
    p.add_argument("--extras", type=float, nargs="*", default=None,
                   help="values of the model's extra features for material.inp, in its order (PROPS(5…); "
                        "default: their lower training bound)")
    p.add_argument("--verify", action="store_true",
                   help="also run the compiled UMAT and the Python bridge side by side on 5 strain paths "
                        "inside the training box and report the largest stress/STATEV/tangent difference "
                        "(exit 1 above 1e-9 relative)")
    p.set_defaults(func=run_umat)

    q = sub.add_parser("ccx", help="run a CalculiX deck with the generated UMAT")
    add_ccx_arguments(q)
    q.set_defaults(func=run_ccx_command)

    add_casting_parser(sub)                      # neumat casting (fortran_umat/cli_casting.py)


def run_umat(args) -> int:
    """``neumat umat``: build (or reuse) the library, print its path and the deck snippet, verify."""
    if not Path(args.model).is_file():
        raise NeumatInputError(f"ONNX file {args.model} not found")
    material = dict(E=args.E, nu=args.nu, temp_mode=args.temp_mode, extras=args.extras)
    res = build_umat(args.model, out_dir=args.out, name=args.name, force=args.force, material=material)
    info = res.info
    print(f"model     {args.model}  ({len(info['feature_names'])} inputs: {', '.join(info['feature_names'])}; "
          f"rate floor {info['rate_floor']:g} 1/s; box policy {info['box_policy']})")
    print(f"source    {res.source}")
    print(f"library   {res.library}")
    print(f"material  @ABAQUS_{res.name}  (CONSTANTS={res.nprops}, DEPVAR={res.nstatv})")
    print(f"\nBefore running the solver:\n  export LD_LIBRARY_PATH={res.library_dir.resolve()}:$LD_LIBRARY_PATH\n")
    print("Deck snippet (also written to " + str(Path(args.out) / "material.inp") + "):\n")
    print(res.snippet)
    if args.verify:
        v = verify_umat(args.model, library=res.library)
        print("\nverification against the Python bridge: " + v.summary())
        write_json(Path(args.out) / "verification.json", v.as_dict())
        return 0 if v.passed else 1
    return 0


def add_ccx_arguments(p) -> None:
    """Arguments of ``neumat ccx``."""
    p.description = (
        "Build the UMAT of an exported model, run a homogeneous C3D8 compression test in CalculiX "
        f"{CCX_VERSION} (built by `make ccx`) at constant temperature and strain rate, print the "
        "stress-strain curve and Newton iterations per increment and write results.csv. "
        "Units: °C, 1/s, MPa, mm.")
    p.epilog = ("example:\n  neumat ccx --model dz411.onnx --temperature 1000 --strain-rate 0.1 --extras 0 "
                "--compare-plastic --compare-bridge --out ccx_run")
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--temperature", type=float, required=True, help="test temperature, °C")
    p.add_argument("--strain-rate", type=float, required=True, help="true strain rate, 1/s (> 0): rate of the strain the material sees (small strain; logarithmic with --nlgeom)")
    p.add_argument("--strain", type=float, default=0.5, help="final true strain (default 0.5)")
    p.add_argument("--increments", type=int, default=25, help="equal increments (default 25)")
    p.add_argument("--threads", type=int, default=1, help="ccx threads (OMP_NUM_THREADS, CCX_NPROC_*)")
    p.add_argument("--elements", type=int, default=1, help="C3D8 elements per cube edge (default 1)")
    p.add_argument("--side", type=float, default=10.0, help="cube side, mm (default 10)")
    p.add_argument("--E", dest="E", type=float, default=1.0e5,
                   help="Young's modulus, MPa (PROPS(1); default 1e5, a hot-working value)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (PROPS(2); default 0.3)")
    p.add_argument("--extras", type=float, nargs="*", default=[],
                   help="values of the model's extra features, in its order (PROPS(5…))")
    p.add_argument("--nlgeom", action="store_true",
                   help="large deformation (NLGEOM, logarithmic strain); default small strain")
    p.add_argument("--compare-plastic", action="store_true",
                   help="also run ccx's own *PLASTIC with a hardening table sampled from the model "
                        "at this rate and temperature, and print the difference")
    p.add_argument("--compare-bridge", action="store_true",
                   help="also integrate the same homogeneous path with the Python bridge "
                        "(fem_bridge, small strain) and print the difference")
    p.add_argument("--out", default="ccx_out", help="output folder (deck, ccx files, results.csv)")


def run_ccx_command(args) -> int:
    """``neumat ccx``: build the UMAT, write and run the deck, print and write the results."""
    model = Path(args.model)
    if not model.is_file():
        raise NeumatInputError(f"--model {model}: file not found (export one with `neumat export`)")
    if args.threads < 1:
        raise NeumatInputError(f"--threads {args.threads}: must be >= 1")
    if not (args.E > 0 and -1 < args.nu < 0.5):
        raise NeumatInputError(f"--E {args.E} MPa must be > 0 and --nu {args.nu} in (-1, 0.5)")
    check_material(args.E, args.nu, where="neumat ccx")
    if args.compare_bridge and args.nlgeom:
        raise NeumatInputError("--compare-bridge compares with the small-strain bridge: drop --nlgeom")
    check_writable_folder(args.out, f"--out {args.out}")
    n_extras = read_model_info(model).n_features - 3
    if len(args.extras) != n_extras:
        raise NeumatInputError(f"--extras: the model takes {n_extras} extra feature value(s), "
                               f"got {len(args.extras)}")
    ccx_binary()                                     # fail early with the `make ccx` hint
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # material.inp of the run: the PROPS of the deck, checked (E, nu, one value per extra) before the build
    built = build_umat(model, out_dir=out / "umat",
                       material=dict(E=args.E, nu=args.nu, temp_mode=TEMP_MODE_CALCULIX, extras=args.extras))
    lib_path, lib_name = built_library(built)
    n_extras = getattr(built, "nprops", N_FIXED_PROPS + len(args.extras)) - N_FIXED_PROPS
    if len(args.extras) != n_extras:
        raise NeumatInputError(f"--extras: the model takes {n_extras} extra feature value(s), "
                               f"got {len(args.extras)}")
    props = [args.E, args.nu, float(TEMP_MODE_CALCULIX), 0.0] + list(args.extras)
    mat = UserMaterial(lib_name, props, built.nstatv)
    deck = write_compression_deck(out / "compression_umat.inp", material=mat,
                                  temperature_c=args.temperature, strain_rate=args.strain_rate,
                                  final_true_strain=args.strain, n_increments=args.increments,
                                  side_mm=args.side, n_elem=args.elements, nlgeom=args.nlgeom)
    res = run_ccx(deck.path, library_dir=lib_path.parent, threads=args.threads)
    ref = None
    if args.compare_plastic:
        table = plastic_table(onnx_flow_stress(model), args.strain_rate, args.temperature,
                              p_max=1.2 * args.strain, extras=args.extras)
        pdeck = write_compression_deck(out / "compression_plastic.inp",
                                       material=PlasticMaterial(args.E, args.nu, table),
                                       temperature_c=args.temperature, strain_rate=args.strain_rate,
                                       final_true_strain=args.strain, n_increments=args.increments,
                                       side_mm=args.side, n_elem=args.elements, nlgeom=args.nlgeom)
        ref = run_ccx(pdeck.path, threads=args.threads)
    t = res.times()
    eps = deck.applied_strain(t)
    sig = -res.axial_stress()
    bridge = ref_sig = None
    if ref:       # on the UMAT run's times (they differ only if ccx cut an increment)
        ref_sig = np.interp(t, ref.times(), -ref.axial_stress())
        ref_it = {round(a.time / deck.step_time, 9): a.iterations for a in ref.increments}
    if args.compare_bridge:
        tb, sb, _ = uniaxial_stress_path(bridge_update(model, props), deck=deck)
        bridge = np.interp(t, tb, -sb[:, 2])
    rows = ["increment,time_s,strain,stress_MPa,p,pdot_1_per_s,n_out_of_box,iterations"
            + (",plastic_stress_MPa,plastic_iterations,rel_diff" if ref else "")]
    print(f"CalculiX {CCX_VERSION}: {deck.n_elem ** 3} C3D8, T = {args.temperature} °C, "
          f"rate = {args.strain_rate} 1/s, {'NLGEOM' if args.nlgeom else 'small strain'}, "
          f"UMAT lib{lib_name}.so, {res.wall_s:.2f} s on {args.threads} thread(s)")
    print(" inc   strain   stress/MPa        p   iter" + ("  *PLASTIC/MPa  iter  rel.diff" if ref else "")
          + ("  bridge/MPa  rel.diff" if bridge is not None else ""))
    if bridge is not None:
        rows[0] += ",bridge_stress_MPa,bridge_rel_diff"
    for k, inc in enumerate(res.increments):
        sdv = inc.sdv.mean(axis=0) if inc.sdv is not None else np.full(max(built.nstatv, 9), np.nan)
        line = (f"{k + 1},{t[k]:.9g},{eps[k]:.9g},{sig[k]:.7g},{sdv[0]:.6g},{sdv[7]:.6g},"
                f"{sdv[8]:.6g},{inc.iterations}")
        txt = f"{k + 1:4d} {eps[k]:8.4f} {sig[k]:12.4f} {sdv[0]:8.4f} {inc.iterations!s:>6}"
        if ref:
            rs, ri = ref_sig[k], ref_it.get(round(t[k] / deck.step_time, 9))
            d = sig[k] / rs - 1.0
            line += f",{rs:.7g},{ri},{d:.3e}"
            txt += f" {rs:13.4f} {ri!s:>5} {d:9.2e}"
        if bridge is not None:
            d = sig[k] / bridge[k] - 1.0
            line += f",{bridge[k]:.9g},{d:.3e}"
            txt += f" {bridge[k]:11.4f} {d:9.2e}"
        rows.append(line)
        print(txt)
    (out / "results.csv").write_text("\n".join(rows) + "\n")
    it = res.iterations()
    print(f"Newton iterations per increment: mean {it.mean():.2f}, max {it.max()}"
          + (f"; *PLASTIC: mean {ref.iterations().mean():.2f}, max {ref.iterations().max()}; "
             f"max relative stress difference {relative_difference(sig, ref_sig):.2e}"
             if ref else ""))
    if bridge is not None:
        print(f"max relative stress difference to the Python bridge: {relative_difference(sig, bridge):.2e}")
    n_out = max((float(i.sdv[:, 8].max()) for i in res.increments if i.sdv is not None), default=0.0)
    if n_out > 0:
        print(f"note: up to {n_out:g} plastic increment(s) per integration point were evaluated outside the data "
              "(STATEV(9): away from the measured conditions or past the curves' last strain); the model's box "
              "policy applied")
    print(f"wrote {out / 'results.csv'} (stress: true axial stress magnitude, MPa)")
    return 0
