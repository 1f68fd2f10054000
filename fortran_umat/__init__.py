"""neumat: fortran_umat — the ONNX flow-stress model translated to Fortran 2008 (flow stress and
its derivatives, J2 return mapping, Abaqus/CalculiX UMAT), compiled with gfortran, loadable from
Python.

    neumat umat model.onnx --out DIR        # .f90, lib<NAME>.so, material.inp; prints the snippet
    neumat ccx --model model.onnx ...       # that UMAT in a CalculiX compression test
    neumat casting --model model.onnx ...   # residual stress of a cooling blade-like casting in CalculiX

Python API:
    flow_module.translate(onnx_path) -> (Translation, ModelInfo)  Fortran module text from the ONNX file alone
    build.build_umat(onnx_path, out_dir=None) -> BuildResult  gfortran -O3 build, cached by the file's sha256
    library_binding.CompiledBackend(onnx_path)                fem_bridge flow-stress backend (ctypes)
    library_binding.CompiledUmat(library, props).call(...)    one UMAT call from Python
    verify.verify_umat(onnx_path)                             Fortran UMAT vs Python bridge, increment by increment

CalculiX (ccx 2.20, built by `make ccx`):
    ccx_deck.write_compression_deck(path, material=...)      the homogeneous C3D8 compression deck
    ccx_run.run_ccx(deck, library_dir=...) -> CcxResult       run it (ccx_run.ccx_binary() locates ccx)
    ccx_results.parse_dat / parse_frd / parse_sta             ccx's output read back into arrays
    ccx_compare.uniaxial_stress_path / bridge_update          the same path in Python, for comparison
    casting.run_casting(CastingOptions(...))                  gmsh part → heat transfer → stress (UMAT, *PLASTIC)
    casting_checks.write_block_deck / write_plate_deck        thermal-stress checks with closed forms, bridge_bar_path

Library entry points: ``umat_`` (Abaqus argument list), ``neumat_flow_batch(n, x, sigma, dsig)``
and ``neumat_flow(x, sigma, dsig)`` (bind(C)). PROPS/STATEV: fem_bridge.conventions.
Environment: NEUMAT_CACHE (cache root, default ~/.cache/neumat), NEUMAT_FFLAGS (extra gfortran
flags, e.g. -march=native), FC (the compiler, default gfortran).
"""
