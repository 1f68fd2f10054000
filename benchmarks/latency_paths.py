"""The evaluation paths the latency benchmark times, and how each one is set up and called.

A path is one way of getting the flow stress σ and dσ/dx (or a J2 update, or a UMAT call) out of
a model: ``PATHS`` names them with their kind and label. ``ModelContext`` holds what a path
needs for one model (the FlowNet, its ONNX file, the compiled library, the reference kernel);
``prepare_model`` makes those, recording per path why it could not be made instead of raising.
The runners here (``flow_evaluator``, ``J2Runner``, ``CallbackLoop``) are what
``latency_measure`` times and ``latency_profiles`` profiles.
"""
from __future__ import annotations

import ctypes
import dataclasses
import shutil
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from constitutive.flownet import FlowNet
from constitutive.laws import arrhenius_stress
from export.onnx_export import export_onnx
from fem_bridge.backends import OnnxBackend
from fem_bridge.conventions import NSTATV, SV_P, SV_PDOT
from fem_bridge.j2 import Elasticity, integrate
from fem_bridge.umat import UmatMaterial
from fortran_umat.build import build_umat, fflags
from fortran_umat.library_binding import CompiledBackend, CompiledUmat

from . import latency_subjects as subj
from .build_cache import cached_build, file_hash
from .latency_refkernel import RefBackend, build_reference, supported
from .latency_umat import loading_sequence

# path name -> (kind, label); kind: "flow" = σ and dσ/dx, "j2" = return mapping per point-step,
# "callback" = single-point Python UMAT call, "umat_loop" = Fortran driver, per call
PATHS = {
    "torch_eager": ("flow", "torch eager + autograd (reference)"),
    "onnxruntime": ("flow", "onnxruntime from Python (OnnxBackend.evaluate)"),
    "compiled": ("flow", "compiled kernel through ctypes (CompiledBackend.evaluate)"),
    "arrhenius_numpy": ("flow", "Arrhenius law, numpy vectorised (baseline)"),
    "reference_kernel": ("flow", "reference only: straight-line Fortran written by the benchmark from the FlowNet, "
                                 "same gfortran flags, through ctypes (what the generator could reach)"),
    "reference_kernel_simd": ("flow", "reference only: the same network on blocks of 32 points (SIMD across points), "
                                      "-O3 -march=native, through ctypes"),
    "integrate_onnxruntime": ("j2", "fem_bridge.j2.integrate, onnxruntime backend"),
    "integrate_compiled": ("j2", "fem_bridge.j2.integrate, compiled backend"),
    "umat_python_callback": ("callback", "UmatMaterial.call, single point (compiled backend)"),
    "umat_python_callback_onnxruntime": ("callback", "UmatMaterial.call, single point (onnxruntime backend)"),
    "umat_compiled_ctypes": ("callback", "compiled Fortran UMAT called from Python through ctypes (CompiledUmat.call), single point"),
    "umat_fortran_loop": ("umat_loop", "generated Fortran UMAT in a Fortran loop (per call)"),
    "compiled_native": ("flow", "variant: the same generated Fortran compiled with -march=native added, through ctypes"),
    "umat_fortran_loop_native": ("umat_loop", "variant: the generated Fortran UMAT compiled with -march=native added, "
                                              "in the Fortran loop (per call)"),
}
ARRHENIUS_MODEL = "arrhenius_m9"
SINGLE_THREAD = ("arrhenius_numpy", "reference_kernel", "reference_kernel_simd")     # no thread pool in these paths
NATIVE_FLAGS = ["-march=native"]


# ---- the set-up a path needs: model, ONNX file, compiled library -----------------------------
@dataclass
class ModelContext:
    name: str
    net: FlowNet
    label: str
    source: str
    workdir: Path
    onnx_path: Path | None = None
    library: object | None = None            # fortran_umat BuildResult
    ref_lib: Path | None = None               # benchmarks.latency_refkernel library
    native: object | None = None              # BuildResult of the -march=native variant
    errors: dict = field(default_factory=dict)

    def model_json(self) -> Path:
        p = self.workdir / "model.json"
        if not p.exists():
            self.net.save(p)
        return p


def prepare_model(ctx: ModelContext) -> None:
    """Export ONNX and generate/compile the Fortran kernel + UMAT (errors recorded, not raised)."""
    try:
        ctx.onnx_path = ctx.workdir / "model.onnx"
        export_onnx(ctx.net, ctx.onnx_path)
    except Exception as exc:                    # recorded per path as the reason it is missing
        ctx.onnx_path = None
        ctx.errors["onnx"] = failure_reason(exc)
        return
    try:
        ctx.library = build_umat(ctx.onnx_path)          # the cached library: stable path for the driver
    except Exception as exc:
        ctx.library = None
        ctx.errors["compiled"] = failure_reason(exc)
    if ctx.library is not None:
        try:
            ctx.native = native_variant(ctx.library)
        except Exception as exc:
            ctx.errors["compiled_native"] = failure_reason(exc)
    why = supported(ctx.net)
    if why:
        ctx.errors["reference_kernel"] = why
        return
    try:
        ctx.ref_lib = build_reference(ctx.net)
    except Exception as exc:
        ctx.errors["reference_kernel"] = failure_reason(exc)


def native_variant(build):
    """The product's generated source compiled with its flags plus ``NATIVE_FLAGS`` (kept in the
    benchmark's cache, so the product's own cached library is never replaced)."""
    src = source_path(build)
    lib_name = library_path(build).name
    flags = [f for f in fflags() if f not in NATIVE_FLAGS] + NATIVE_FLAGS

    def make(folder: Path) -> None:
        gf = shutil.which("gfortran")
        r = subprocess.run([gf, *flags, f"-J{folder}", str(src), "-o", str(folder / lib_name)],
                           capture_output=True, text=True, cwd=folder)
        if r.returncode != 0:
            raise RuntimeError(f"native build failed: {r.stderr[-1000:]}")

    folder = cached_build("native\0" + file_hash(src) + "\0" + " ".join(flags), make)
    names = {f.name for f in dataclasses.fields(build)} if dataclasses.is_dataclass(build) else set()
    if "library" in names:
        return dataclasses.replace(build, library=folder / lib_name)
    if "library_path" in names:
        return dataclasses.replace(build, library_path=folder / lib_name)
    raise RuntimeError(f"cannot make a variant of {type(build).__name__}")


def failure_reason(exc: BaseException) -> str:
    """One line saying why a path is unavailable: the missing module, or the error and where."""
    if isinstance(exc, ModuleNotFoundError):
        return f"not available: module {exc.name} missing"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    msg = str(exc)
    if len(msg) > 400:
        msg = msg[:400] + " …"
    return f"error: {type(exc).__name__}: {msg}{where}"


# ---- runners: one object per (model, path, threads) ------------------------------------------
def set_omp_threads(threads: int) -> bool:
    """Set the OpenMP thread count of the process (libgomp), True when possible."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        return False
    gomp.omp_set_num_threads(ctypes.c_int(threads))
    return True


def library_path(build) -> Path:
    return Path(getattr(build, "library_path", None) or build.library)


def source_path(build) -> Path | None:
    p = getattr(build, "source_path", None) or getattr(build, "source", None)
    return Path(p) if p else None


def compiled_uses_openmp(ctx: ModelContext, routine: str = "neumat_flow_batch") -> bool:
    """Whether ``routine`` of the compiled library (the flow batch, or ``neumat_j2_batch``, the
    N-point return mapping) has an OpenMP-parallel loop (its source says so)."""
    src = source_path(ctx.library)
    if src is None or not src.is_file():
        return False
    text = Path(src).read_text().lower()
    i = text.find(f"subroutine {routine}")
    j = text.find(f"end subroutine {routine}", i)
    return i >= 0 and "!$omp" in text[i:j]


class ArrheniusPath:
    """The vectorised Arrhenius baseline (``latency_subjects.arrhenius_params``) as a flow path."""

    def __init__(self):
        self.params = subj.arrhenius_params()

    def evaluate(self, x):
        return arrhenius_stress(self.params, x[:, 0], x[:, 1], x[:, 2], grad=True)


def flow_evaluator(ctx: ModelContext, path: str, threads: int):
    """An object with ``evaluate(x) -> (σ, dσ/dx)`` for a flow path."""
    if path == "torch_eager":
        from .latency_torch import TorchEagerPath  # optional: imports torch (the train extra)
        return TorchEagerPath(ctx.net, threads=threads)
    if path == "onnxruntime":
        if ctx.onnx_path is None:
            raise RuntimeError(ctx.errors.get("onnx", "no ONNX file"))
        return OnnxBackend(ctx.onnx_path, threads=threads)
    if path in ("compiled", "compiled_native"):
        build = ctx.library if path == "compiled" else ctx.native
        if build is None:
            raise RuntimeError(ctx.errors.get(path, ctx.errors.get("compiled", ctx.errors.get("onnx", "no compiled library"))))
        set_omp_threads(threads)
        return CompiledBackend(ctx.onnx_path, build=build, threads=threads)
    if path in ("reference_kernel", "reference_kernel_simd"):
        if ctx.ref_lib is None:
            raise RuntimeError(ctx.errors.get("reference_kernel", "reference kernel not built"))
        return RefBackend(ctx.ref_lib, ctx.net, blocked=path.endswith("simd"))
    if path == "arrhenius_numpy":
        return ArrheniusPath()
    raise KeyError(path)


def backend_for(ctx: ModelContext, which: str, threads: int = 1):
    return flow_evaluator(ctx, "compiled" if which == "compiled" else "onnxruntime", threads)


# J2 loading: every point one plastic increment from an unloaded state with a random
# accumulated plastic strain p_n ∈ [0, 0.5] (inside the model's strain range), constant
# temperature and strain rate.
def j2_state(net: FlowNet, n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    stress = np.zeros((n, 6))
    statev = np.zeros((n, NSTATV))
    statev[:, SV_P] = 0.5 * rng.random(n)
    dstran = np.broadcast_to(subj.strain_increment(), (n, 6)).copy()
    temperature = np.full(n, subj.TEMPERATURE_C)
    extras = np.zeros((n, net.n_features - 3)) if net.n_features > 3 else None
    return stress, statev, dstran, subj.time_increment(), temperature, extras


class J2Runner:
    """Calls ``fem_bridge.j2.integrate`` on n points (one plastic increment each)."""

    def __init__(self, ctx: ModelContext, backend: str, threads: int):
        self.integrate = integrate
        self.flow = backend_for(ctx, backend, threads)
        self.elastic = Elasticity(subj.E_MPA, subj.NU)
        self.net = ctx.net

    def prepare(self, n: int):
        stress, statev, dstran, dt, temp, extras = j2_state(self.net, n)

        def call():
            return self.integrate(self.flow, stress, statev, dstran, dt, temp, self.elastic, extras=extras)
        return call


def j2_plastic_fraction(result, n: int) -> float:
    """Fraction of points whose increment was plastic (pdot > 0 in the returned STATEV)."""
    statev = result_field(result, "statev")
    return float(np.count_nonzero(statev[:, SV_PDOT] > 0) / n)


def result_field(result, name: str):
    """``name`` of an integrate result (a dict or an object with that attribute)."""
    if isinstance(result, dict):
        return result[name]
    if hasattr(result, name):
        return getattr(result, name)
    raise TypeError(f"cannot find '{name}' in the result of integrate ({type(result).__name__})")


# ---- single-point paths: Python callback, compiled UMAT through ctypes ----------------------------
class CountingFlow:
    """Wraps a flow backend and counts evaluate calls and points (for Newton iteration counts)."""

    def __init__(self, inner):
        self.inner, self.calls, self.points = inner, 0, 0

    def evaluate(self, x):
        self.calls += 1
        self.points += len(x)
        return self.inner.evaluate(x)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class CallbackLoop:
    """Calls ``UmatMaterial.call`` along the driver's loading path (state carried from call to
    call, reset to zero after ``nsteps`` calls), so every call is plastic."""

    def __init__(self, ctx: ModelContext, flow, nsteps: int):
        if flow == "compiled_umat":
            if ctx.library is None:
                raise RuntimeError(ctx.errors.get("compiled", ctx.errors.get("onnx", "no compiled UMAT library")))
            self.mat = CompiledUmat(library_path(ctx.library), subj.props_for(ctx.net))
        else:
            self.mat = UmatMaterial(flow, subj.props_for(ctx.net))
        self.seq = loading_sequence(nsteps)
        self.nstatv = NSTATV

    def run(self, ncalls: int) -> dict:
        call = self.mat.call
        seq, m = self.seq, len(self.seq)
        stress, statev = np.zeros(6), np.zeros(self.nstatv)
        plastic = cuts = 0
        k = 0
        for _ in range(ncalls):
            a = seq[k]
            stress, statev, _, pnewdt = call(stress, statev, a["stran"], a["dstran"], time=(a["time"], a["time"]),
                                            dtime=a["dtime"], temp=a["temp"], dtemp=0.0)
            plastic += statev[SV_PDOT] > 0
            cuts += pnewdt < 1.0
            k += 1
            if k == m:
                k = 0
                stress, statev = np.zeros(6), np.zeros(self.nstatv)
        return dict(plastic=int(plastic), cuts=int(cuts), stress=stress, statev=statev)
