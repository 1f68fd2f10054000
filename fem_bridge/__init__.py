"""neumat: fem_bridge — the Python side of the FE coupling.

* ``FlowStressBackend`` / ``OnnxBackend`` / ``FlowNetBackend`` / ``load_backend``: σ_y and its
  input derivatives for N points (fem_bridge.backends);
* ``integrate`` / ``Elasticity`` / ``Update``: the vectorised J2 return mapping (fem_bridge.j2);
* ``umat`` / ``UmatMaterial``: the Abaqus UMAT interface for one point (fem_bridge.umat);
* ``conventions``: Voigt order, PROPS / STATEV tables, status codes, the algorithm in words;
* ``mesh.evaluate_mesh``: the model over a mesh file (``mesh_io``, ``mesh_fields``, ``mesh_modes``,
  ``mesh_chunks``; on a Dask cluster: ``dask_runner``);
* ``hosts``: the Gleeble hot-compression FE hosts (scikit-fem and DOLFINx).
"""
from . import conventions
from .backends import FlowNetBackend, FlowStressBackend, OnnxBackend, as_backend, load_backend
from .j2 import Elasticity, Update, integrate
from .umat import UmatMaterial, umat

__all__ = ["conventions", "FlowStressBackend", "OnnxBackend", "FlowNetBackend", "load_backend",
           "as_backend", "Elasticity", "Update", "integrate", "umat", "UmatMaterial"]
