"""Flow-stress backends: one interface, several engines.

A backend evaluates σ_y(x) and ∂σ_y/∂x for N points at once, x = [equivalent plastic strain (–),
strain rate (1/s), temperature (°C), extras...] (N, F) float64, σ in MPa. The input policy of
the model (rate floor, box clamp/extrapolate) is applied by the backend itself (inside the ONNX
graph, in the compiled kernel, or by ``FlowNet.apply_policy``).

* :class:`OnnxBackend`   — the exported ONNX file through onnxruntime (``kind="onnxruntime"``);
* ``fortran_umat.library_binding.CompiledBackend`` — the Fortran kernel generated from the same
  ONNX file (``kind="compiled"``, found through the ``neumat.backends`` entry point);
* :class:`FlowNetBackend` — the float64 numpy reference (``FlowNet.evaluate``), for tests and
  for running straight from a ``model.json`` (``kind="numpy"``).
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from constitutive.coverage import Coverage, outside_data
from constitutive.errors import NeumatInputError
from constitutive.flownet import FlowNet
from export.contract import read_model_info
from export.runtime import open_session, run_session

BACKEND_GROUP = "neumat.backends"     # entry-point group: kind name -> backend class


class FlowStressBackend:
    """Interface. Subclasses set the attributes in ``__init__`` and implement :meth:`_evaluate`."""

    feature_names: list[str]
    feature_units: list[str]
    box_lo: np.ndarray          # (F,)
    box_hi: np.ndarray          # (F,)
    rate_floor: float           # 1/s
    box_policy: str             # "clamp" | "extrapolate"
    coverage: Coverage | None = None   # the measured conditions (None: the box is the fallback)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_extras(self) -> int:
        return self.n_features - 3

    def check_x(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise NeumatInputError(
                f"x has shape {x.shape}; expected (N, {self.n_features}) with columns "
                f"{', '.join(self.feature_names)}")
        return x

    def evaluate(self, x) -> tuple[np.ndarray, np.ndarray]:
        """σ (N,) in MPa and dσ/dx (N, F), policy applied. Rows are independent (a NaN row
        gives NaN in that row only)."""
        x = self.check_x(x)
        if x.shape[0] == 0:
            return np.zeros(0), np.zeros((0, self.n_features))
        return self._evaluate(x)

    def _evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def out_of_box(self, x) -> np.ndarray:
        """Boolean per row: the evaluation lies outside the data (``constitutive.coverage``): farther
        than the threshold from every measured condition in normalised (T, log10 ε̇, extras) space,
        or strain beyond the curves' last strain (strain from 0 to the first measured point is
        inside); for a model without coverage, outside the training box (strain from 0 inside).
        The rate is raised to the floor first, as the model evaluates it."""
        return outside_data(self.check_x(x), self.coverage, self.box_lo, self.box_hi, self.rate_floor)

    def temperature_outside(self, temperature) -> np.ndarray:
        """Boolean per value (°C): the temperature alone is outside the data (farther than the
        threshold from every measured temperature; without coverage: outside the box)."""
        t = np.asarray(temperature, dtype=float).reshape(-1)
        if self.coverage is not None:
            return self.coverage.temperature_outside(t)
        with np.errstate(invalid="ignore"):
            return ~((t >= self.box_lo[2]) & (t <= self.box_hi[2]))

    def describe(self) -> str:
        box = ", ".join(f"{n} [{lo:g}, {hi:g}]" for n, lo, hi in zip(self.feature_names, self.box_lo, self.box_hi))
        cov = self.coverage.describe() if self.coverage is not None else "no measured conditions recorded (box rule)"
        return (f"{type(self).__name__}: {box}; rate floor {self.rate_floor:g} 1/s; box policy {self.box_policy}; "
                f"{cov}")


class FlowNetBackend(FlowStressBackend):
    """The numpy reference evaluation of a :class:`FlowNet` (or a model.json / run folder)."""

    def __init__(self, net: FlowNet | str | Path, threads: int = 1):
        """``threads`` is accepted for the common backend signature; numpy decides its own."""
        if not isinstance(net, FlowNet):
            net = FlowNet.load(net)
        self.net = net
        self.feature_names = list(net.feature_names)
        self.feature_units = list(net.feature_units)
        self.box_lo = np.asarray(net.box_lo, dtype=float)
        self.box_hi = np.asarray(net.box_hi, dtype=float)
        self.rate_floor = float(net.rate_floor)
        self.box_policy = net.box_policy
        self.coverage = net.data_coverage

    def _evaluate(self, x):
        with np.errstate(all="ignore"):
            return self.net.evaluate(x, policy=True)


class OnnxBackend(FlowStressBackend):
    """The exported ONNX file (``export.onnx_export``) run by onnxruntime.

    The file is read and checked by ``export.contract.read_model_info`` and run by the session
    of ``export.runtime.open_session``. ``threads``: onnxruntime intra-op threads (1 = no thread
    pool, the right choice when the caller already runs in parallel).
    """

    def __init__(self, path: str | Path, threads: int = 1, *, data: bytes | None = None):
        """``data``: the serialized model (then ``path`` only names it in messages), e.g. the
        bytes a Dask worker received (``fem_bridge.dask_runner``)."""
        info = read_model_info(path, data=data)
        self.path = info.path
        self.metadata = info.metadata
        self.feature_names = list(info.feature_names)
        self.feature_units = list(info.feature_units)
        self.box_lo = info.box_lo
        self.box_hi = info.box_hi
        self.rate_floor = info.rate_floor
        self.box_policy = info.box_policy
        self.coverage = info.coverage
        self.model_bytes = info.model_bytes      # what the session runs (shipped to Dask workers)
        self.threads = max(int(threads), 1)
        self.session = open_session(info, self.threads)

    def _evaluate(self, x):
        return run_session(self.session, x)


def backend_kinds() -> dict[str, "importlib.metadata.EntryPoint"]:
    """The backend kinds installed, by name: the ``neumat.backends`` entry points of
    pyproject.toml (``onnxruntime`` and ``numpy`` here, ``compiled`` from fortran_umat). A higher
    package adds a kind by declaring an entry point, so this module never imports it."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=BACKEND_GROUP)}


def load_backend(path: str | Path, kind: str = "onnxruntime", threads: int = 1) -> FlowStressBackend:
    """A backend for ``path``: ``onnxruntime`` (ONNX file), ``compiled`` (the Fortran kernel
    generated from the ONNX file) or ``numpy`` (a model.json or run folder); any kind is
    constructed as ``cls(path, threads=threads)``."""
    kinds = backend_kinds()
    if kind not in kinds:
        raise NeumatInputError(f"backend kind '{kind}' unknown; choose one of {', '.join(sorted(kinds))}")
    try:
        cls = kinds[kind].load()
    except ImportError as exc:
        raise NeumatInputError(f"the {kind} backend is not available ({exc})") from None
    return cls(path, threads=threads)


def as_backend(flow) -> FlowStressBackend:
    """Accept a backend, a FlowNet, or a path (.onnx → onnxruntime, else model.json/run folder)."""
    if isinstance(flow, FlowStressBackend) or (hasattr(flow, "evaluate") and hasattr(flow, "rate_floor")
                                               and hasattr(flow, "box_lo") and not isinstance(flow, FlowNet)):
        return flow
    if isinstance(flow, FlowNet):
        return FlowNetBackend(flow)
    if isinstance(flow, (str, Path)):
        p = Path(flow)
        return OnnxBackend(p) if p.suffix.lower() == ".onnx" else FlowNetBackend(p)
    raise NeumatInputError(f"flow must be a FlowStressBackend, a FlowNet or a model path, not {type(flow).__name__}")
