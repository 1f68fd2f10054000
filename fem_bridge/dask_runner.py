"""``neumat mesh --dask``: the chunks of ``evaluate_mesh`` evaluated on a Dask cluster.

``dask``/``distributed`` are imported only here, inside the functions, and only when a
``DaskRunner`` is made (``--dask``); install them with ``pip install 'neumat[dask]'``.

How it works:

* the cluster: ``local`` / ``local:N`` starts a ``LocalCluster`` of N worker processes (default:
  the number of cores) with one thread each and stops it at the end; an address
  (``tcp://host:8786``, ``tls://…``, ``host:port``) connects to a running scheduler, whose workers
  must have neumat (and onnxruntime) installed; a ``distributed.Client`` is used as it is.
* the model is shipped once: the serialized ONNX model (the bytes the driver's own session runs)
  is scattered to every worker with ``broadcast=True`` in a single call; every task gets the
  future of those bytes (resolved to the worker's local copy, never re-sent) and the model's
  sha256; each worker process builds its onnxruntime session (one intra-op thread) at its first
  task and keeps it in a per-process cache keyed by the sha256 (``session_builds()`` counts them).
* the work: the rows are cut into tasks of ``task_rows`` rows (a multiple of ``chunk``, so the
  task boundaries are chunk boundaries); the driver builds each task's inputs from the mesh
  fields, scatters them to one worker and submits the task there; at most two tasks per worker
  thread are in flight, so the driver holds only a few tasks' inputs at a time. A worker splits
  its task at the same ``chunk`` boundaries as the single-process path and runs the same
  per-chunk function (``fem_bridge.mesh_chunks.CHUNK_EVALUATORS``) with the same onnxruntime options, so the
  results are bitwise those of the single-process run.
* failures: an exception in a task is caught on the worker and sent back with the worker's
  address; a task lost with its worker (``KilledWorker``, a lost connection) fails on the client.
  Either way the task becomes a ``ChunkFailure`` (rows ``start``…``stop - 1``, worker, error);
  its rows are NaN in the output (update mode: status -1), ``evaluation_failed`` = 1 marks them,
  and every other task's results are kept and written.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
import warnings
from dataclasses import dataclass

import numpy as np

from constitutive.errors import NeumatInputError

from .backends import OnnxBackend
from .mesh_chunks import CHUNK_EVALUATORS
from .progress import progress_bar

DEFAULT_TASK_ROWS = 2 ** 20        # rows per Dask task (16 default chunks; ~1 s of one core)
INSTALL_HINT = "pip install 'neumat[dask]'  (or: pip install 'dask[distributed]')"
_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|ws|wss|inproc)://)?([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


def parse_spec(spec: str) -> tuple[str, object]:
    """``("local", n_workers)`` for ``local`` / ``local:N``, ``("address", address)`` for a
    scheduler address; NeumatInputError for anything else."""
    text = str(spec).strip()
    if text == "local" or text.startswith("local:"):
        if text == "local":
            return "local", os.cpu_count() or 1
        n = text.partition(":")[2]
        if not n.isdigit() or int(n) < 1:
            raise NeumatInputError(f"--dask local:N takes a number of worker processes N >= 1, got '{text}'")
        return "local", int(n)
    m = _ADDRESS.match(text)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise NeumatInputError(f"--dask takes 'local', 'local:N' (N worker processes) or a scheduler "
                               f"address like tcp://host:8786, got '{text}'")
    return "address", text if m.group(1) else f"tcp://{text}"


def _import_distributed():
    try:
        import distributed  # optional: the dask extra, needed only for --dask
    except ImportError as exc:
        raise NeumatInputError(f"--dask needs the optional packages dask and distributed, which are not "
                               f"installed ({exc}); install the 'dask' extra: {INSTALL_HINT}") from None
    return distributed


@dataclass
class ChunkFailure:
    """A task that failed: rows ``start`` … ``stop - 1`` (flat row indices, i.e. points, cells or
    cell quadrature points in mesh order), the worker it ran on (when known) and the error."""
    start: int
    stop: int
    worker: str | None
    error: str

    def message(self, location: str = "points") -> str:
        where = f" on worker {self.worker}" if self.worker else ""
        return f"{location} {self.start}–{self.stop - 1} failed{where}: {self.error}"


# ---------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------
_BACKENDS: dict = {}               # sha256 of the model bytes -> OnnxBackend (one per process)
_BUILDS: dict = {}                 # sha256 -> onnxruntime sessions built by this process
_LOCK = threading.Lock()


def session_builds(key: str | None = None) -> int:
    """How many onnxruntime sessions this process has built for Dask tasks, for the model of
    sha256 ``key`` or for all (tests check that it is one per worker and model)."""
    return _BUILDS.get(key, 0) if key is not None else sum(_BUILDS.values())


def model_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _backend(key: str, data: bytes):
    flow = _BACKENDS.get(key)
    if flow is None:
        with _LOCK:
            flow = _BACKENDS.get(key)
            if flow is None:
                flow = OnnxBackend(f"<model {key[:12]}>", threads=1, data=data)
                _BACKENDS[key] = flow
                _BUILDS[key] = _BUILDS.get(key, 0) + 1
    return flow


def _evaluate_rows(flow, evaluator: str, arrays: tuple, params: dict, chunk: int, start: int) -> tuple:
    """Rows ``start`` … of one task, chunk by chunk (``start`` is a multiple of ``chunk``), by the
    chunk evaluator named ``evaluator`` (``mesh_chunks.CHUNK_EVALUATORS``)."""
    fn = CHUNK_EVALUATORS[evaluator]
    n = next(len(a) for a in arrays if a is not None)
    parts = []
    for a in range(0, n, chunk):
        sl = slice(a, min(a + chunk, n))
        parts.append(fn(flow, *(x[sl] if x is not None else None for x in arrays), **params))
    out = []
    for k in range(len(parts[0])):
        vals = [p[k] for p in parts]
        out.append(sum(vals) if np.isscalar(vals[0]) else np.concatenate(vals))
    return tuple(out)


def _run_task(key: str, model_data: bytes, evaluator: str, arrays: tuple, params: dict, chunk: int,
              start: int):
    """The Dask task: ``("ok", outputs)`` or ``("error", worker address, message)``."""
    try:
        flow = _backend(key, model_data)
        return "ok", _evaluate_rows(flow, evaluator, arrays, params, chunk, start)
    except Exception as exc:          # reported with the row range by the driver; other tasks go on
        try:
            from distributed import get_worker  # optional: the dask extra (this runs on a worker)
            addr = get_worker().address
        except Exception:
            addr = None
        return "error", addr, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------
class DaskRunner:
    """Runs ``evaluate_mesh``'s chunks on a cluster given by a spec (see ``parse_spec``) or a
    ``distributed.Client``."""

    def __init__(self, spec, task_rows: int | None = None):
        self.client = None
        if isinstance(spec, str):
            self.kind, self.target = parse_spec(spec)
        else:
            self.kind, self.target, self.client = "client", None, spec
        if task_rows is not None and int(task_rows) < 1:
            raise NeumatInputError(f"--dask-task-rows must be >= 1, got {task_rows}")
        self.task_rows = int(task_rows or DEFAULT_TASK_ROWS)
        _import_distributed()
        self.scatter_calls = 0          # broadcast scatters of the model (one per run)
        self.tasks = 0

    # -- connecting ---------------------------------------------------------------------------
    def _connect(self):
        distributed = _import_distributed()
        if self.client is not None:
            return self.client, None, None
        if self.kind == "local":
            with warnings.catch_warnings():     # "Port 8787 is already in use" (its HTTP server moves on)
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                cluster = distributed.LocalCluster(n_workers=self.target, threads_per_worker=1,
                                                   processes=True, dashboard_address=None,
                                                   silence_logs=logging.ERROR)
            return distributed.Client(cluster, direct_to_workers=True), cluster, "local"
        try:
            client = distributed.Client(self.target, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise NeumatInputError(f"cannot connect to the Dask scheduler at {self.target} "
                                   f"({type(exc).__name__}: {exc})") from None
        return client, None, "remote"

    # -- running --------------------------------------------------------------------------------
    def run(self, flow, evaluator: str, params: dict, inputs, store, rows: int, chunk: int, progress: bool):
        """Evaluate rows 0 … rows-1 with the chunk evaluator named ``evaluator``: ``inputs(slice)``
        gives a task's input arrays, ``store(slice, outputs)`` takes its results. Returns the list
        of ``ChunkFailure``."""
        data = getattr(flow, "model_bytes", None)
        if data is None:
            raise NeumatInputError("--dask needs an ONNX model (an OnnxBackend or a .onnx path), "
                                   f"not {type(flow).__name__}")
        distributed = _import_distributed()
        task_rows = -(-self.task_rows // chunk) * chunk          # a multiple of the chunk size
        ranges = [(a, min(a + task_rows, rows)) for a in range(0, rows, task_rows)]
        failures: list[ChunkFailure] = []
        client, cluster, _ = self._connect()
        try:
            info = client.scheduler_info()
            if not info.get("workers"):
                try:
                    client.wait_for_workers(1, timeout=60)
                except (TimeoutError, OSError):
                    raise NeumatInputError(f"the Dask scheduler at {client.scheduler.address} has no "
                                           f"workers (waited 60 s)") from None
                info = client.scheduler_info()
            nthreads = sum(w.get("nthreads", 1) for w in info["workers"].values()) or 1
            key = model_key(data)
            model = client.scatter(data, broadcast=True, hash=False)   # shipped once, to every worker
            self.scatter_calls += 1
            bar = progress_bar(rows, progress, f"neumat mesh (dask, {nthreads} workers)")
            pending = list(reversed(ranges))
            by_future = {}
            window = distributed.as_completed()
            run_id = uuid.uuid4().hex[:8]

            def submit():
                a, b = pending.pop()
                # one object (the tuple of this task's input arrays), sent to one worker
                arrays = client.scatter([inputs(slice(a, b))], hash=False)[0]
                fut = client.submit(_run_task, key, model, evaluator, arrays, params, chunk, a,
                                    pure=False, key=f"neumat-mesh-{run_id}-{a}-{b}")
                by_future[fut] = (a, b, arrays)
                window.add(fut)
                self.tasks += 1

            for _ in range(min(len(pending), 2 * nthreads)):
                submit()
            for fut in window:
                a, b, arrays = by_future.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:          # lost worker, cancelled, undeserialisable result
                    res = ("error", None, f"{type(exc).__name__}: {exc}")
                del arrays
                fut.release()
                if res[0] == "ok":
                    store(slice(a, b), res[1])
                else:
                    failures.append(ChunkFailure(a, b, res[1], res[2]))
                bar.update(b - a)
                if failures and hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(f"{len(failures)} failed", refresh=False)
                if pending:
                    submit()
            bar.close()
            del model
        finally:
            if cluster is not None:
                client.close()
                cluster.close()
            elif self.kind != "client":
                client.close()
        return failures

