"""Generate the Fortran UMAT for an ONNX model and compile it with gfortran, cached by the model's hash.

The library is ``lib<NAME>.so`` with ``NAME = NEUMAT + first 10 hex digits of the ONNX file's
sha256, upper-cased`` (letters and digits only: CalculiX upper-cases the deck and splits the
material name ``@ABAQUS_<NAME>`` at ``_``). It lives in
``${NEUMAT_CACHE:-~/.cache/neumat}/umat/<sha256>/`` next to its source and is rebuilt only when
missing or when the generated source or the compiler flags changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from constitutive.errors import NeumatInputError
from constitutive.paths import cache_root
from export.contract import ModelInfo
from fem_bridge import conventions as cv

from .flow_module import Translation, translate
from .fortran_text import f_real

TEMPLATE = Path(__file__).with_name("templates") / "j2_umat.f90"

# -O3 for speed; -fPIC -shared for a loadable library; -frecursive puts EVERY local variable on
# the stack: without it gfortran may give large local arrays static storage (see
# -fmax-stack-var-size), which threads calling the UMAT at once would then share and overwrite.
# -fno-fast-math semantics are the default: IEEE results, NaN checks keep working.
FFLAGS = ["-O3", "-fPIC", "-shared", "-frecursive", "-ffree-line-length-none"]
# NEUMAT_FFLAGS adds flags, e.g. "-march=native" (about 1.7x faster on wide networks; the library
# then runs only on CPUs like the build machine). They are part of the cache key.
GENERATOR_VERSION = "3"


def fflags() -> list[str]:
    return FFLAGS + os.environ.get("NEUMAT_FFLAGS", "").split()


@dataclass
class BuildResult:
    library: Path            # lib<NAME>.so
    name: str                # <NAME>: material name @ABAQUS_<NAME>
    source: Path             # the generated .f90
    nstatv: int              # *DEPVAR
    nprops: int              # *USER MATERIAL, CONSTANTS
    props: list = field(default_factory=list)     # [(index, name, meaning)]
    snippet: str = ""        # ready *MATERIAL block (comments document PROPS/STATEV)
    info: dict = field(default_factory=dict)      # feature names, box, rate floor, policy (ModelInfo.as_dict)

    @property
    def library_dir(self) -> Path:
        """The folder to put on LD_LIBRARY_PATH."""
        return self.library.parent

    @property
    def library_path(self) -> Path:
        return self.library

    @property
    def library_name(self) -> str:
        return self.name


def library_name(sha256: str) -> str:
    return "NEUMAT" + sha256[:10].upper()


def layout_constants() -> dict[str, str]:
    """The PROPS/STATEV positions (1-based) of fem_bridge.conventions, as template substitutions:
    the Fortran return mapping indexes PROPS and STATEV through these named constants only."""
    eps = cv.SV_EPS_P
    if eps.stop - eps.start != 6 or eps.step not in (None, 1):
        raise AssertionError(f"conventions.SV_EPS_P {eps}: expected 6 consecutive components")
    return {"@@PROP_E@@": str(cv.PROP_E + 1), "@@PROP_NU@@": str(cv.PROP_NU + 1),
            "@@PROP_TEMP_MODE@@": str(cv.PROP_TEMP_MODE + 1), "@@PROP_RATE_FLOOR@@": str(cv.PROP_RATE_FLOOR + 1),
            "@@SV_P@@": str(cv.SV_P + 1), "@@SV_EPS_P@@": str(eps.start + 1),
            "@@SV_PDOT@@": str(cv.SV_PDOT + 1), "@@SV_NOUT@@": str(cv.SV_NOUT + 1)}


def layout_comment(info: ModelInfo) -> str:
    """Fortran comment lines listing PROPS and STATEV (from conventions and the model)."""
    lines = [f"! PROPS({i}) {n}: {m}".replace("…", "...") for i, n, m in props_table(info)]
    lines += [f"! STATEV({i + 1}) {s}" for i, s in enumerate(cv.STATEV)]
    return "\n".join(lines) + "\n"


def umat_source(tr: Translation, info: ModelInfo, max_iter: int | None = None) -> str:
    """The whole Fortran file: flow module, J2 module and the UMAT."""
    extras = info.feature_names[3:]
    subs = {
        "@@FLOWMOD@@": tr.module,
        "!@@LAYOUT@@\n": layout_comment(info), **layout_constants(),
        "@@NSTATV@@": str(cv.NSTATV), "@@NFIXED@@": str(cv.N_FIXED_PROPS),
        "@@NPROPS@@": str(cv.N_FIXED_PROPS + len(extras)),
        "@@OK@@": str(cv.OK), "@@STEP_CUT@@": str(cv.STEP_CUT), "@@BAD_INPUT@@": str(cv.BAD_INPUT),
        "@@RTOL@@": f_real(cv.RTOL), "@@MAX_ITER@@": str(int(max_iter or cv.MAX_ITER)),
        "@@PNEWDT_CUT@@": f_real(cv.PNEWDT_CUT),
        "@@TEMP_MODE_CALCULIX@@": str(cv.TEMP_MODE_CALCULIX),
        "@@EXTRAS@@": ", ".join(extras) if extras else "none",
    }
    text = TEMPLATE.read_text()
    for k, v in subs.items():
        text = text.replace(k, v)
    spec, rest = text.split("!@@CONTAINS\n")
    contains, external = rest.split("!@@EXTERNAL\n")
    spec = spec.replace("!@@SPEC\n", "")
    return (tr.flow_source.replace("!@@J2_SPEC@@\n", spec)
            .replace("!@@J2_CONTAINS@@\n", contains + "\n")
            .replace("!@@J2_EXTERNAL@@\n", "\n" + external))


def props_table(info: ModelInfo) -> list[tuple[int, str, str]]:
    """(1-based index, name, meaning) of every PROPS entry: conventions.PROPS, then the extras."""
    meaning = {
        "E": "Young's modulus, MPa",
        "nu": "Poisson's ratio (-1 < nu < 0.5)",
        "temp_mode": (f"temperature convention: {cv.TEMP_MODE_ABAQUS} Abaqus (T_end = TEMP + DTEMP), "
                      f"{cv.TEMP_MODE_CALCULIX} CalculiX (T_end = TEMP)"),
        "rate_floor": f"strain-rate floor, 1/s; <= 0 uses the model's ({info.rate_floor:g} 1/s)"}
    rows = [(i + 1, n, meaning[n]) for i, n in enumerate(cv.PROPS)]
    lo, hi = info.box_lo, info.box_hi
    for k, name in enumerate(info.feature_names[3:]):
        rows.append((cv.N_FIXED_PROPS + 1 + k, name,
                     f"extra feature '{name}' (training range {lo[3 + k]:g} … {hi[3 + k]:g})"))
    return rows


def material_snippet(name: str, info: ModelInfo, E: float = 1.5e5, nu: float = 0.3,
                     temp_mode: int = cv.TEMP_MODE_CALCULIX, extras: list[float] | None = None) -> str:
    rows = props_table(info)
    extras = list(extras) if extras is not None else [float(v) for v in info.box_lo[3:]]
    values = [0.0] * cv.N_FIXED_PROPS           # rate_floor 0: the model's floor
    values[cv.PROP_E], values[cv.PROP_NU], values[cv.PROP_TEMP_MODE] = E, nu, temp_mode
    values += extras
    lines = ["** neumat UMAT " + name + " (generated). PROPS:"]
    lines += [f"**   PROPS({i}) {n}: {m}" for i, n, m in rows]
    lines += ["** STATEV:"] + [f"**   STATEV({i + 1}) {s}" for i, s in enumerate(cv.STATEV)]
    lines += [f"** Example values below (E in MPa, CalculiX temperature convention, model rate floor"
              + (", extras at their lower bound" if extras else "") + ") - edit them.",
              f"*MATERIAL, NAME=@ABAQUS_{name}",
              f"*USER MATERIAL, CONSTANTS={len(values)}"]
    fmt = [f"{v:g}" for v in values]
    for i in range(0, len(fmt), 8):
        lines.append(", ".join(fmt[i:i + 8]))
    lines += ["*DEPVAR", str(cv.NSTATV)]
    return "\n".join(lines) + "\n"


def _gfortran() -> str:
    exe = shutil.which(os.environ.get("FC", "gfortran")) or shutil.which("gfortran")
    if not exe:
        raise NeumatInputError("gfortran not found: install it (apt-get install gfortran) or set FC")
    return exe


def compile_library(source: Path, library: Path, extra_flags: list[str] | None = None) -> None:
    """gfortran source → shared library, written atomically (a tmp file then rename)."""
    library.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=library.name + ".", suffix=".tmp", dir=library.parent)
    os.close(fd)
    # run in an empty folder that also receives the .mod files: gfortran reads a module's .mod
    # back even within one file and searches the working folder first, where a stale file of the
    # same name could sit
    with tempfile.TemporaryDirectory() as moddir:
        cmd = [_gfortran(), *fflags(), *(extra_flags or []), f"-J{moddir}",
               str(Path(source).resolve()), "-o", str(Path(tmp).resolve())]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=moddir)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"gfortran failed on {source}:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}")
    os.replace(tmp, library)


def build_umat(onnx_path, out_dir=None, *, max_iter: int | None = None, force: bool = False) -> BuildResult:
    """Generate and compile the UMAT for ``onnx_path`` (cached); with ``out_dir`` also write the
    .f90, the library and ``material.inp`` there. ``max_iter`` overrides the Newton iteration
    limit (a test hook for forced non-convergence; a separate cache entry)."""
    tr, info = translate(onnx_path)
    name = library_name(tr.sha256)
    src_text = umat_source(tr, info, max_iter)
    variant = "" if max_iter is None else f"-maxiter{int(max_iter)}"
    cache = cache_root() / "umat" / (tr.sha256 + variant)
    lib = cache / f"lib{name}.so"
    src = cache / f"{name.lower()}.f90"
    stamp = cache / "build.json"
    key = hashlib.sha256((src_text + "\0" + " ".join(fflags()) + "\0" + GENERATOR_VERSION).encode()).hexdigest()
    fresh = (not force and lib.is_file() and stamp.is_file()
             and json.loads(stamp.read_text()).get("key") == key)
    if not fresh:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp_src = tempfile.mkstemp(suffix=".f90", dir=cache)
        with os.fdopen(fd, "w") as fh:
            fh.write(src_text)
        os.replace(tmp_src, src)
        compile_library(src, lib)
        stamp.write_text(json.dumps({"key": key, "onnx": str(Path(onnx_path).resolve()),
                                     "sha256": tr.sha256, "flags": fflags()}, indent=1))
    snippet = material_snippet(name, info)
    res = BuildResult(library=lib, name=name, source=src, nstatv=cv.NSTATV,
                      nprops=cv.N_FIXED_PROPS + info.n_features - 3,
                      props=props_table(info), snippet=snippet, info=info.as_dict())
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / src.name)
        tmp = out / (lib.name + ".tmp")
        shutil.copyfile(lib, tmp)
        os.replace(tmp, out / lib.name)
        (out / "material.inp").write_text(snippet)
        res = BuildResult(library=out / lib.name, name=name, source=out / src.name, nstatv=res.nstatv,
                          nprops=res.nprops, props=res.props, snippet=snippet, info=res.info)
    return res
