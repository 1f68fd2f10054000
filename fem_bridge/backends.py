"""Flow-stress backends: one interface, several engines.

A backend evaluates σ_y(x) and ∂σ_y/∂x for N points at once, x = [equivalent plastic strain (–),
strain rate (1/s), temperature (°C), extras...] (N, F) float64, σ in MPa. The input policy of
the model (rate floor, box clamp/extrapolate) is applied by the backend itself (inside the ONNX
graph, in the compiled kernel, or by ``FlowNet.apply_policy``).

* :class:`OnnxBackend`   — the exported ONNX file through onnxruntime (``kind="onnxruntime"``);
* ``fortran_umat.compiled.CompiledBackend`` — the Fortran kernel generated from the same ONNX
  file (``kind="compiled"``, imported lazily);
* :class:`FlowNetBackend` — the float64 numpy reference (``FlowNet.evaluate``), for tests and
  for running straight from a ``model.json`` (``kind="numpy"``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.flownet import FlowNet

BACKEND_KINDS = ("onnxruntime", "compiled", "numpy")


class FlowStressBackend:
    """Interface. Subclasses set the attributes in ``__init__`` and implement :meth:`_evaluate`."""

    feature_names: list[str]
    feature_units: list[str]
    box_lo: np.ndarray          # (F,)
    box_hi: np.ndarray          # (F,)
    rate_floor: float           # 1/s
    box_policy: str             # "clamp" | "extrapolate"

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
        """Boolean per row: any input outside the training box (a rate below the floor is
        raised to the floor first, as the model evaluates it)."""
        x = np.array(self.check_x(x), copy=True)
        x[:, 1] = np.maximum(x[:, 1], self.rate_floor)
        return np.any((x < self.box_lo) | (x > self.box_hi), axis=1)

    def describe(self) -> str:
        box = ", ".join(f"{n} [{lo:g}, {hi:g}]" for n, lo, hi in zip(self.feature_names, self.box_lo, self.box_hi))
        return f"{type(self).__name__}: {box}; rate floor {self.rate_floor:g} 1/s; box policy {self.box_policy}"


class FlowNetBackend(FlowStressBackend):
    """The numpy reference evaluation of a :class:`FlowNet` (or a model.json / run folder)."""

    def __init__(self, net: FlowNet | str | Path):
        if not isinstance(net, FlowNet):
            net = FlowNet.load(net)
        self.net = net
        self.feature_names = list(net.feature_names)
        self.feature_units = list(net.feature_units)
        self.box_lo = np.asarray(net.box_lo, dtype=float)
        self.box_hi = np.asarray(net.box_hi, dtype=float)
        self.rate_floor = float(net.rate_floor)
        self.box_policy = net.box_policy

    def _evaluate(self, x):
        with np.errstate(all="ignore"):
            return self.net.evaluate(x, policy=True)


class OnnxBackend(FlowStressBackend):
    """The exported ONNX file (``export.onnx_export``) run by onnxruntime.

    ``threads``: onnxruntime intra-op threads (1 = no thread pool, the right choice when the
    caller already runs in parallel). Graph optimisation is limited to the basic level: the
    extended fusions of onnxruntime may fold constants into float32 attributes.
    """

    def __init__(self, path: str | Path, threads: int = 1, *, data: bytes | None = None):
        """``data``: the serialized model (then ``path`` only names it in messages), e.g. the
        bytes a Dask worker received (``fem_bridge.dask_runner``)."""
        import onnx
        import onnxruntime as ort
        from export.onnx_export import (INPUT_NAME, METADATA_KEYS, ONNX_FORMAT, OUTPUT_GRAD,
                                        OUTPUT_SIGMA, read_metadata)
        self.path = Path(path)
        if data is None and not self.path.is_file():
            raise NeumatInputError(f"model file {self.path} not found (expected an ONNX file written "
                                   f"by 'neumat export')")
        try:
            model = (onnx.load_from_string(data) if data is not None
                     else onnx.load(str(self.path), load_external_data=False))
        except Exception as exc:      # protobuf raises its own DecodeError, others OSError/ValueError
            raise NeumatInputError(f"{self.path}: not an ONNX file ({type(exc).__name__}: {exc})") from None
        if len(model.graph.node) == 0 and not model.graph.input:
            raise NeumatInputError(f"{self.path}: not an ONNX file (no graph)")
        expected = (f"expected a neumat flow-stress model: input '{INPUT_NAME}' float64 (N, F), outputs "
                    f"'{OUTPUT_SIGMA}' (N,) and '{OUTPUT_GRAD}' (N, F), metadata "
                    f"'{METADATA_KEYS['format']}' = {ONNX_FORMAT}")
        init_names = {i.name for i in model.graph.initializer}
        inputs = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input if i.name not in init_names]
        outputs = [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output]
        dbl = onnx.TensorProto.DOUBLE
        if inputs != [(INPUT_NAME, dbl)] or outputs != [(OUTPUT_SIGMA, dbl), (OUTPUT_GRAD, dbl)]:
            raise NeumatInputError(f"{self.path}: ONNX signature inputs {inputs}, outputs {outputs} "
                                   f"(element types as ONNX codes, 11 = double); {expected}")
        try:
            meta = read_metadata(model)
        except json.JSONDecodeError as exc:
            raise NeumatInputError(f"{self.path}: unreadable metadata ({exc}); {expected}") from None
        need = ("format", "feature_names", "box_lo", "box_hi", "rate_floor", "box_policy")
        missing = [METADATA_KEYS[k] for k in need if k not in meta]
        if missing or meta["format"] != ONNX_FORMAT:
            raise NeumatInputError(f"{self.path}: metadata {'missing ' + ', '.join(missing) if missing else 'format ' + repr(meta['format'])}; {expected}")
        self.metadata = meta
        self.feature_names = list(meta["feature_names"])
        self.feature_units = list(meta.get("feature_units", ["?"] * len(self.feature_names)))
        self.box_lo = np.asarray(meta["box_lo"], dtype=float)
        self.box_hi = np.asarray(meta["box_hi"], dtype=float)
        self.rate_floor = float(meta["rate_floor"])
        self.box_policy = str(meta["box_policy"])
        f = self.n_features
        if f < 3 or self.box_lo.shape != (f,) or self.box_hi.shape != (f,):
            raise NeumatInputError(f"{self.path}: metadata lists {f} features but boxes of "
                                   f"{self.box_lo.shape}/{self.box_hi.shape}; {expected}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(int(threads), 1)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.model_bytes = model.SerializeToString()      # what the session runs (shipped to Dask workers)
        self.threads = max(int(threads), 1)
        try:
            self.session = ort.InferenceSession(self.model_bytes, so,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise NeumatInputError(f"{self.path}: onnxruntime cannot load it ({exc})") from None
        self._names = [OUTPUT_SIGMA, OUTPUT_GRAD]
        self._input = INPUT_NAME

    def _evaluate(self, x):
        sigma, grad = self.session.run(self._names, {self._input: x})
        return sigma, grad


def load_backend(path: str | Path, kind: str = "onnxruntime", threads: int = 1) -> FlowStressBackend:
    """A backend for ``path``: ``onnxruntime`` (ONNX file), ``compiled`` (the Fortran kernel
    generated from the ONNX file) or ``numpy`` (a model.json or run folder)."""
    if kind == "onnxruntime":
        return OnnxBackend(path, threads=threads)
    if kind == "compiled":
        try:
            from fortran_umat.compiled import CompiledBackend
        except ImportError as exc:
            raise NeumatInputError(f"the compiled backend is not available ({exc})") from None
        return CompiledBackend(path)
    if kind == "numpy":
        return FlowNetBackend(path)
    raise NeumatInputError(f"backend kind '{kind}' unknown; choose one of {', '.join(BACKEND_KINDS)}")


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
