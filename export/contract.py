"""The ONNX contract between training (``export.onnx_export`` writes the file) and the runtimes
(``fem_bridge.backends.OnnxBackend`` runs it with onnxruntime, ``fortran_umat`` translates it to
Fortran). Every name, key and check of that file lives here, and every consumer reads a file
through :func:`read_model_info`.

* **Input** :data:`INPUT_NAME`: float64, shape ``(N, F)``, physical units, columns in this order:
  equivalent plastic strain (–), strain rate (1/s), temperature (°C), then the extra features
  (their names and units are in the metadata).
* **Outputs** :data:`OUTPUT_SIGMA`: float64 ``(N,)``, flow stress in :data:`STRESS_UNIT` (MPa);
  :data:`OUTPUT_GRAD`: float64 ``(N, F)``, ∂σ/∂x_k in MPa per unit of input k.
* **Operators**: only those in :data:`EMITTED_OPS`, default ONNX domain, opset
  :data:`DEFAULT_OPSET` or later.
* **Data coverage** (optional key ``coverage``): the measured conditions (T °C, rate 1/s, extras),
  the last strain per condition, the normalisation spacing and the threshold of
  ``constitutive.coverage`` (normalised space (T, log10 ε̇, extras) / typical grid spacing; outside
  the data when farther than ``threshold`` spacings from every condition or past the curves' last
  strain; strain from 0 to the first measured point inside). Files without it still load: every
  consumer then falls back to the training box (strain from 0 inside).
* **Metadata** (``model.metadata_props``): every value is a JSON string; the keys are the values
  of :data:`METADATA_KEYS`; :data:`REQUIRED_KEYS` must be present, ``format`` equal to
  :data:`ONNX_FORMAT`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from constitutive.coverage import Coverage
from constitutive.errors import NeumatInputError

ONNX_FORMAT = "neumat-onnx/1"
DEFAULT_OPSET = 17
INPUT_NAME = "x"
OUTPUT_SIGMA = "sigma"
OUTPUT_GRAD = "dsigma_dx"
OUTPUT_NAMES = (OUTPUT_SIGMA, OUTPUT_GRAD)
STRESS_UNIT = "MPa"
BOX_POLICIES = ("clamp", "extrapolate")

#: The ONNX operator types the exporter may emit (default domain). A translator that covers
#: exactly these covers every exported model.
EMITTED_OPS = ("MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Neg", "Exp", "Log", "Tanh", "Sqrt", "Pow",
               "Max", "Min", "Greater", "Less", "Where", "Concat", "Slice", "Reshape")

#: metadata_props keys (values are JSON strings), by short name.
METADATA_KEYS = {
    "format": "neumat.format",                  # "neumat-onnx/1"
    "feature_names": "neumat.feature_names",    # list[str], the F input columns in order
    "feature_units": "neumat.feature_units",    # list[str], e.g. ["-", "1/s", "C", ...]
    "box_lo": "neumat.box_lo",                  # list[float] (F), training box lower bounds
    "box_hi": "neumat.box_hi",                  # list[float] (F), training box upper bounds
    "rate_floor": "neumat.rate_floor",          # float, 1/s
    "box_policy": "neumat.box_policy",          # "clamp" | "extrapolate"
    "stress_unit": "neumat.stress_unit",        # "MPa"
    "model_format": "neumat.model_format",      # FlowNet format, "neumat-flownet/1"
    "model_version": "neumat.model_version",    # training's version tag (meta["version"]) or null
    "model_hash": "neumat.model_hash",          # sha256 of the canonical model.json content
    "data_hash": "neumat.data_hash",            # hash of the training data (meta["data_hash"]) or null
    "spec": "neumat.spec",                      # architecture spec string (meta["spec"]) or null
    "source": "neumat.source",                  # the model.json path it was exported from, or null
    "base": "neumat.base",                      # hybrid base mode: "additive" | "multiplicative" | null
    "meta": "neumat.meta",                      # the full FlowNet.meta dict
    "coverage": "neumat.coverage",              # the measured conditions (constitutive.coverage); optional
}
#: the short names every consumer needs
REQUIRED_KEYS = ("format", "feature_names", "box_lo", "box_hi", "rate_floor", "box_policy")

_EXPECTED = (f"expected a neumat flow-stress model: input '{INPUT_NAME}' float64 (N, F), outputs "
             f"'{OUTPUT_SIGMA}' (N,) and '{OUTPUT_GRAD}' (N, F), metadata "
             f"'{METADATA_KEYS['format']}' = {ONNX_FORMAT}")


def read_metadata(model: onnx.ModelProto) -> dict:
    """The metadata dict (short names of :data:`METADATA_KEYS` → decoded JSON values); keys
    outside the contract are left out. ``json.JSONDecodeError`` for a value that is not JSON."""
    props = {p.key: p.value for p in model.metadata_props}
    return {short: json.loads(props[key]) for short, key in METADATA_KEYS.items() if key in props}


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (13 when it names none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)


@dataclass(frozen=True)
class ModelInfo:
    """An ONNX file that passed every check of the contract, and what it says about itself."""
    path: Path                    # the file (only a name in messages when read from bytes)
    model: onnx.ModelProto
    model_bytes: bytes            # the serialized model, as read (what onnxruntime runs)
    sha256: str                   # hex digest of model_bytes
    opset: int                    # default-domain opset
    feature_names: list[str]      # the F input columns in order
    feature_units: list[str]      # their units ("?" each when the file lists none)
    box_lo: np.ndarray            # (F,) training box, physical units
    box_hi: np.ndarray            # (F,)
    rate_floor: float             # 1/s
    box_policy: str               # "clamp" | "extrapolate"
    metadata: dict = field(default_factory=dict)   # short name -> decoded value (read_metadata)
    coverage: Coverage | None = None   # the measured conditions; None in files without them (box fallback)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def op_types(self) -> list[str]:
        """The operator types the graph uses, sorted."""
        return sorted({n.op_type for n in self.model.graph.node})

    def as_dict(self) -> dict:
        """Plain values (lists, not arrays) of what a build or a backend reports."""
        return dict(feature_names=list(self.feature_names), feature_units=list(self.feature_units),
                    box_lo=[float(v) for v in self.box_lo], box_hi=[float(v) for v in self.box_hi],
                    rate_floor=self.rate_floor, box_policy=self.box_policy,
                    n_features=self.n_features, metadata=self.metadata,
                    coverage=None if self.coverage is None else self.coverage.to_dict())


def _fail(path, what: str) -> NeumatInputError:
    return NeumatInputError(f"{path}: {what}")


def read_model_info(source: str | Path, *, data: bytes | None = None) -> ModelInfo:
    """Read and check the ONNX file ``source`` (or the serialized model ``data``; then
    ``source`` only names it in messages). :class:`NeumatInputError` when the file is missing,
    not ONNX, has another signature, or its metadata are unreadable, incomplete or inconsistent."""
    path = Path(source)
    if data is None:
        if not path.is_file():
            raise NeumatInputError(f"model file {path} not found (expected an ONNX file written "
                                   f"by 'neumat export')")
        data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:      # protobuf raises its own DecodeError, others OSError/ValueError
        raise _fail(path, f"not an ONNX file (the bytes are not an ONNX model: "
                          f"{type(exc).__name__}: {exc})") from None
    g = model.graph
    if len(g.node) == 0 and not g.input:
        raise _fail(path, "not an ONNX file (no graph: not an ONNX model)")
    init_names = {i.name for i in g.initializer}
    xin = [i for i in g.input if i.name not in init_names]
    inputs = [(i.name, i.type.tensor_type.elem_type) for i in xin]
    outputs = [(o.name, o.type.tensor_type.elem_type) for o in g.output]
    dbl = onnx.TensorProto.DOUBLE
    if inputs != [(INPUT_NAME, dbl)] or outputs != [(OUTPUT_SIGMA, dbl), (OUTPUT_GRAD, dbl)]:
        raise _fail(path, f"ONNX signature inputs {inputs}, outputs {outputs} "
                          f"(element types as ONNX codes, 11 = double); {_EXPECTED}")
    try:
        meta = read_metadata(model)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"unreadable metadata ({exc}); {_EXPECTED}") from None
    missing = [METADATA_KEYS[k] for k in REQUIRED_KEYS if k not in meta]
    if missing or meta["format"] != ONNX_FORMAT:
        what = "missing " + ", ".join(missing) if missing else "format " + repr(meta["format"])
        raise _fail(path, f"metadata {what}; {_EXPECTED}")
    names = list(meta["feature_names"])
    f = len(names)
    try:
        lo = np.asarray(meta["box_lo"], dtype=float)
        hi = np.asarray(meta["box_hi"], dtype=float)
        rate_floor = float(meta["rate_floor"])
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"unreadable metadata ({exc}); {_EXPECTED}") from None
    if f < 3 or lo.shape != (f,) or hi.shape != (f,):
        raise _fail(path, f"metadata lists {f} features but boxes of {lo.shape}/{hi.shape}; {_EXPECTED}")
    dims = xin[0].type.tensor_type.shape.dim
    if len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value != f):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
        raise _fail(path, f"input '{INPUT_NAME}' has shape {shape}, the metadata list {f} features; "
                          f"{_EXPECTED}")
    policy = str(meta["box_policy"])
    if policy not in BOX_POLICIES:
        raise _fail(path, f"metadata box_policy '{policy}' is not one of {', '.join(BOX_POLICIES)}")
    units = list(meta.get("feature_units", ["?"] * f))
    coverage = None
    if meta.get("coverage") is not None:
        try:
            coverage = Coverage.from_dict(meta["coverage"], f)
        except NeumatInputError as exc:
            raise _fail(path, f"metadata {METADATA_KEYS['coverage']}: {exc}") from None
    return ModelInfo(path=path, model=model, model_bytes=bytes(data),
                     sha256=hashlib.sha256(data).hexdigest(), opset=opset_of(model),
                     feature_names=names, feature_units=units, box_lo=lo, box_hi=hi,
                     rate_floor=rate_floor, box_policy=policy, metadata=meta, coverage=coverage)
