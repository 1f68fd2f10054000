"""The one place that opens an onnxruntime session for a checked ONNX model
(:class:`export.contract.ModelInfo`), used by ``fem_bridge.backends.OnnxBackend`` and by the
export's own verification."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from constitutive.errors import NeumatInputError

from .contract import INPUT_NAME, OUTPUT_NAMES, ModelInfo


def open_session(info: ModelInfo, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session running ``info.model_bytes``.

    ``threads``: intra-op threads (1 = no thread pool, the right choice when the caller already
    runs in parallel). Graph optimisation is limited to the basic level: the extended fusions of
    onnxruntime may fold constants into float32 attributes."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(int(threads), 1)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        return ort.InferenceSession(info.model_bytes, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise NeumatInputError(f"{info.path}: onnxruntime cannot load it ({exc})") from None


def run_session(session: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """σ (N,) in MPa and dσ/dx (N, F) for x (N, F) float64, C-contiguous."""
    sigma, grad = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    return sigma, grad
