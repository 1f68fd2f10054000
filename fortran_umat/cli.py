"""``neumat umat``: Fortran UMAT from an ONNX model; ``neumat ccx`` (from fortran_umat.ccx, when present)."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "umat", help="generate and compile the Fortran UMAT (Abaqus/CalculiX) from an ONNX model",
        description="Translate the ONNX flow-stress model to Fortran 2008 (flow stress + J2 return "
                    "mapping + Abaqus UMAT), compile it with gfortran into lib<NAME>.so (cached by the "
                    "model's hash under ${NEUMAT_CACHE:-~/.cache/neumat}/umat) and print the library "
                    "path and a *MATERIAL snippet. Units: MPa, 1/s, °C, s.",
        epilog="example:  neumat umat runs/demo/model.onnx --out runs/demo/umat --verify")
    p.add_argument("model", help="model.onnx written by `neumat export`")
    p.add_argument("--out", required=True, help="folder for the .f90, the library and material.inp")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached library is current")
    p.add_argument("--verify", action="store_true",
                   help="also run the compiled UMAT and the Python bridge side by side on 5 strain paths "
                        "inside the training box and report the largest stress/STATEV/tangent difference "
                        "(exit 1 above 1e-9 relative)")
    p.set_defaults(func=run_umat)

    if importlib.util.find_spec("fortran_umat.ccx") is not None:
        ccx = importlib.import_module("fortran_umat.ccx")
        q = sub.add_parser("ccx", help="run a CalculiX deck with the generated UMAT")
        ccx.add_arguments(q)
        q.set_defaults(func=ccx.run)


def run_umat(args) -> int:
    from constitutive.errors import NeumatInputError
    from .build import build_umat
    if not Path(args.model).is_file():
        raise NeumatInputError(f"ONNX file {args.model} not found")
    res = build_umat(args.model, out_dir=args.out, force=args.force)
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
        import json
        from .verify import verify_umat
        v = verify_umat(args.model, library=res.library)
        print("\nverification against the Python bridge: " + v.summary())
        (Path(args.out) / "verification.json").write_text(json.dumps(v.as_dict(), indent=1) + "\n")
        return 0 if v.passed else 1
    return 0
