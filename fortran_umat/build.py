"""Generate the Fortran UMAT for an ONNX model and compile it with gfortran, cached by the model's hash.

The library is ``lib<NAME>.so``; ``NAME`` is the material name ``@ABAQUS_<NAME>`` of the deck:
chosen by the user (``neumat umat --name``) or, by default, the model file's name (``dz411.onnx``
→ ``DZ411``; a file called ``model.onnx`` takes its folder's name, ``runs/demo/model.onnx`` →
``DEMO``), so it stays the same when the model is retrained. It is upper case, letters and digits
only, starting with a letter, at most ``MAX_NAME_LENGTH`` characters (CalculiX upper-cases the
deck, splits ``@ABAQUS_<NAME>`` at ``_`` and, like Abaqus, takes material names of up to 80
characters). The model's sha256 is in a comment of the generated ``.f90`` and of
``material.inp``. The library lives in ``${NEUMAT_CACHE:-~/.cache/neumat}/umat/<sha256>/`` next
to its source and is rebuilt only when missing or when the generated source or the compiler flags
changed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_atomic
from constitutive.paths import cache_root
from export.contract import ModelInfo
from fem_bridge import conventions as cv
from fem_bridge.mesh_io import check_writable_folder

from .flow_module import Translation, translate
from .fortran_text import f_real

TEMPLATE = Path(__file__).with_name("templates") / "j2_umat.f90"

# -O3 for speed; -fPIC -shared for a loadable library; -frecursive puts EVERY local variable on
# the stack: without it gfortran may give large local arrays static storage (see
# -fmax-stack-var-size), which threads calling the UMAT at once would then share and overwrite.
# -fno-fast-math semantics are the default: IEEE results, NaN checks keep working.
# -fopenmp: the N-point return mapping neumat_j2_batch runs its points on OpenMP threads (the
# UMAT itself starts no threads; -fopenmp also implies -frecursive).
FFLAGS = ["-O3", "-fPIC", "-shared", "-frecursive", "-fopenmp", "-ffree-line-length-none"]
# Instruction set, the stated policy: on x86-64 the library is built for the x86-64-v3 level
# (AVX2, FMA, BMI2: Intel since Haswell, AMD since Zen) when the build machine has it, else for
# the x86-64 baseline. Not -march=native by default: the library is often copied to the nodes
# that run the solver, which need not be the build machine. NEUMAT_ISA=baseline forces the
# baseline; NEUMAT_FFLAGS adds flags (e.g. "-march=native", about 2x faster batches again on
# AVX-512 machines, the library then runs only on CPUs like the build machine). All flags are
# part of the cache key and of the build manifest (build.json).
# Reproducibility: IEEE arithmetic (no -ffast-math: NaN checks work); FMA contraction makes the
# last bits depend on the level: libraries of one level give identical results, of two levels
# results equal to ~1e-15 relative. Within a library the one-point kernel (the UMAT's) and the
# batch kernel agree to 1e-12 relative (tests/test_fortran.py), the UMAT and the Python bridge
# to 1e-9 (``neumat umat --verify``, tests).
ISA_V3_FLAGS = ["-march=x86-64-v3"]
_V3_CPU_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"}
GENERATOR_VERSION = "5"


@functools.lru_cache(maxsize=None)
def isa_flags() -> tuple[str, ...]:
    """The instruction-set flags of the policy above for this build machine."""
    if os.environ.get("NEUMAT_ISA", "").strip().lower() == "baseline" or platform.machine() not in ("x86_64", "AMD64"):
        return ()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    return tuple(ISA_V3_FLAGS) if _V3_CPU_FLAGS <= flags else ()


def fflags() -> list[str]:
    return FFLAGS + list(isa_flags()) + os.environ.get("NEUMAT_FFLAGS", "").split()


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


# "@ABAQUSNL_" + NAME must fit the 80 characters of a CalculiX / Abaqus material name
MAX_NAME_LENGTH = 80 - len("@ABAQUSNL_")


def check_name(name: str) -> str:
    """A user-chosen material name, upper-cased; an error says what is allowed."""
    n = str(name).strip()
    if n.upper().startswith(("@ABAQUS_", "@ABAQUSNL_")):
        n = n.split("_", 1)[1]
    if not (n.isascii() and n.isalnum() and n[:1].isalpha() and len(n) <= MAX_NAME_LENGTH):
        raise NeumatInputError(
            f"--name '{name}': a UMAT material name is letters and digits only (no '_', which "
            f"CalculiX reads as the start of a symbol name), starting with a letter, at most "
            f"{MAX_NAME_LENGTH} characters (used as @ABAQUS_<NAME> and lib<NAME>.so)")
    return n.upper()


def default_name(onnx_path) -> str:
    """The material name from the model file's name: its letters and digits, upper-cased (a file
    called ``model`` takes its folder's name), prefixed ``NEUMAT`` when that leaves nothing or
    starts with a digit, cut to ``MAX_NAME_LENGTH``."""
    p = Path(onnx_path)
    stem = p.stem
    if stem.lower() == "model":
        stem = p.resolve().parent.name or stem
    n = "".join(ch for ch in stem if ch.isascii() and ch.isalnum()).upper()
    if not n[:1].isalpha():
        n = "NEUMAT" + n
    return n[:MAX_NAME_LENGTH]


def source_header(name: str, sha256: str) -> str:
    """First lines of the generated .f90: its material name and the model it was made from."""
    return (f"! neumat UMAT {name} (material @ABAQUS_{name}, library lib{name}.so), generated by neumat\n"
            f"! model sha256 {sha256}\n")


def layout_constants() -> dict[str, str]:
    """The PROPS/STATEV positions (1-based) of fem_bridge.conventions, as template substitutions:
    the Fortran return mapping indexes PROPS and STATEV through these named constants only."""
    eps = cv.SV_EPS_P
    if eps.stop - eps.start != 6 or eps.step not in (None, 1):
        raise AssertionError(f"conventions.SV_EPS_P {eps}: expected 6 consecutive components")
    if cv.LAYOUTS != {(6, 3, 3): (0, 1, 2, 3, 4, 5), (4, 3, 1): (0, 1, 2, 3)}:
        raise AssertionError(f"conventions.LAYOUTS {cv.LAYOUTS}: the template implements NTENS = 6 "
                             f"(11 22 33 12 13 23) and NTENS = 4 (11 22 33 12) only")
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
        "@@BRACKET_RTOL@@": f_real(cv.BRACKET_RTOL),
        "@@PNEWDT_CUT@@": f_real(cv.PNEWDT_CUT),
        "@@TEMP_MODE_CALCULIX@@": str(cv.TEMP_MODE_CALCULIX),
        "@@ABS_ZERO@@": f_real(cv.ABSOLUTE_ZERO_C), "@@MAX_DSTRAN@@": f_real(cv.MAX_DSTRAN),
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


def material_values(info: ModelInfo, E: float = 1.5e5, nu: float = 0.3,
                    temp_mode: int = cv.TEMP_MODE_CALCULIX, extras: list[float] | None = None,
                    rate_floor: float = 0.0) -> list[float]:
    """The PROPS of a deck, checked once for the whole run (``conventions.check_material``: E > 0
    MPa, −1 < ν < 0.5, temp_mode 0/1, one value per extra feature, finite extras and rate floor);
    NeumatInputError naming each problem."""
    n_extras = info.n_features - 3
    extras = list(extras) if extras is not None else [float(v) for v in info.box_lo[3:]]
    names = list(cv.PROPS) + list(info.feature_names[3:])
    values = [0.0] * cv.N_FIXED_PROPS
    values[cv.PROP_E], values[cv.PROP_NU], values[cv.PROP_TEMP_MODE] = E, nu, temp_mode
    values[cv.PROP_RATE_FLOOR] = rate_floor
    values += extras
    cv.check_material(E, nu, temp_mode, props=values, n_props=cv.N_FIXED_PROPS + n_extras, names=names,
                      where="material.inp (PROPS)")
    bad = [f"{n} = {v!r}" for n, v in zip(names[cv.PROP_RATE_FLOOR:], values[cv.PROP_RATE_FLOOR:])
           if not np.isfinite(float(v))]
    if bad:
        raise NeumatInputError("material.inp (PROPS): not finite: " + ", ".join(bad))
    return [float(v) for v in values]


def material_snippet(name: str, info: ModelInfo, E: float = 1.5e5, nu: float = 0.3,
                     temp_mode: int = cv.TEMP_MODE_CALCULIX, extras: list[float] | None = None,
                     rate_floor: float = 0.0, model_sha256: str | None = None) -> str:
    rows = props_table(info)
    given_extras = extras is not None
    values = material_values(info, E, nu, temp_mode, extras, rate_floor)
    extras = values[cv.N_FIXED_PROPS:]
    lines = ["** neumat UMAT " + name + " (generated)" + (f"; model sha256 {model_sha256}" if model_sha256 else "")
             + ". PROPS:"]
    lines += [f"**   PROPS({i}) {n}: {m}" for i, n, m in rows]
    lines += ["** STATEV:"] + [f"**   STATEV({i + 1}) {s}" for i, s in enumerate(cv.STATEV)]
    mode = "CalculiX" if int(temp_mode) == cv.TEMP_MODE_CALCULIX else "Abaqus"
    lines += ["** Temperatures: TEMP in degC (the model's unit; convert K or F in the deck).",
              f"** Values below: E in MPa, {mode} temperature convention, "
              + ("model rate floor" if rate_floor <= 0 else f"rate floor {rate_floor:g} 1/s")
              + (", extras at their lower bound" if extras and not given_extras else "")
              + " - checked (E > 0, -1 < nu < 0.5, one value per PROPS entry).",
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


def build_umat(onnx_path, out_dir=None, *, name: str | None = None, max_iter: int | None = None,
               force: bool = False, material: dict | None = None) -> BuildResult:
    """Generate and compile the UMAT for ``onnx_path`` (cached); with ``out_dir`` also write the
    .f90, the library and ``material.inp`` there. ``name``: the material name (``check_name``;
    default ``default_name(onnx_path)``). ``max_iter`` overrides the Newton iteration limit (a
    test hook for forced non-convergence; a separate cache entry). ``material``: the PROPS values
    of ``material.inp`` (keywords of :func:`material_snippet`: E, nu, temp_mode, extras,
    rate_floor), checked before anything is built (NeumatInputError)."""
    name = check_name(name) if name is not None else default_name(onnx_path)
    tr, info = translate(onnx_path)
    material = dict(material or {})
    material_values(info, **material)           # whole-run check of the PROPS, before the compiler runs
    if out_dir is not None:
        check_writable_folder(out_dir, f"--out {out_dir}")
    src_text = source_header(name, tr.sha256) + umat_source(tr, info, max_iter)
    variant = "" if max_iter is None else f"-maxiter{int(max_iter)}"
    cache = cache_root() / "umat" / (tr.sha256 + variant)
    lib = cache / f"lib{name}.so"
    src = cache / f"{name.lower()}.f90"
    stamp = cache / f"build_{name.lower()}.json"
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
    snippet = material_snippet(name, info, model_sha256=tr.sha256, **material)
    res = BuildResult(library=lib, name=name, source=src, nstatv=cv.NSTATV,
                      nprops=cv.N_FIXED_PROPS + info.n_features - 3,
                      props=props_table(info), snippet=snippet, info=info.as_dict())
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / src.name, src.read_bytes())          # each: temporary file, then rename
        tmp = out / (lib.name + ".tmp")
        shutil.copyfile(lib, tmp)
        os.replace(tmp, out / lib.name)
        write_atomic(out / "material.inp", snippet)
        res = BuildResult(library=out / lib.name, name=name, source=out / src.name, nstatv=res.nstatv,
                          nprops=res.nprops, props=res.props, snippet=snippet, info=res.info)
    return res
