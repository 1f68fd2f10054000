"""neumat: fem_bridge.hosts — two FE hosts of the Gleeble hot-compression test, driven by the J2
stress update ``fem_bridge.j2.integrate``.

The workflow, in the order a host runs it:

1. the problem: ``CompressionSetup`` (temperature °C, nominal strain rate 1/s, final ln(h0/h),
   friction, E MPa, ν, cylinder mm, mesh divisions) and its ``PlatenSchedule`` (``compression_setup``);
2. the mesh: the 1/8 cylinder as a three-block O-grid, ``o_grid_blocks`` (``cylinder_mesh``);
3. the solve, by one of two independent hosts, each needing its own optional FE library:

   * ``run_compression`` (``skfem_compression``, scikit-fem, the ``fem`` extra; ``neumat simulate``):
     B-bar hexahedra (``skfem_bbar``), Newton with line search and fold-over contact, files by
     ``skfem_output``;
   * ``dolfinx_compression.run_compression_dolfinx`` (DOLFINx 0.11 in .venv-dolfinx, MPI), run as
     ``python -m fem_bridge.hosts.dolfinx_compression`` (so not imported here); the FE problem
     in ``dolfinx_problem``;

4. the result: ``force_displacement.csv`` (columns ``CSV_COLUMNS``) and the host's own files.
"""
from .compression_setup import CSV_COLUMNS, CompressionSetup, PlatenSchedule
from .cylinder_mesh import o_grid_blocks, quarter_cylinder_arrays, quarter_cylinder_mesh
from .skfem_compression import CompressionResult, IncrementRecord, run_compression

__all__ = ["CSV_COLUMNS", "CompressionSetup", "PlatenSchedule", "o_grid_blocks", "quarter_cylinder_arrays",
           "quarter_cylinder_mesh", "run_compression", "CompressionResult", "IncrementRecord"]
