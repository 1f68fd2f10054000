"""neumat: fortran_umat — the ONNX flow-stress model translated to Fortran 2008 (flow stress and
its derivatives, J2 return mapping, Abaqus/CalculiX UMAT), compiled with gfortran, loadable from
Python.

    neumat umat model.onnx --out DIR        # .f90, lib<NAME>.so, material.inp; prints the snippet

Python API:
    translate.translate(onnx_path) -> (Translation, info)    Fortran module text from the ONNX file alone
    build.build_umat(onnx_path, out_dir=None) -> BuildResult  gfortran -O3 build, cached by the file's sha256
    compiled.CompiledBackend(onnx_path)                       fem_bridge flow-stress backend (ctypes)
    compiled.CompiledUmat(library, props).call(...)           one UMAT call from Python

Library entry points: ``umat_`` (Abaqus argument list), ``neumat_flow_batch(n, x, sigma, dsig)``
and ``neumat_flow(x, sigma, dsig)`` (bind(C)). PROPS/STATEV: fem_bridge.conventions.
Environment: NEUMAT_CACHE (cache root, default ~/.cache/neumat), NEUMAT_FFLAGS (extra gfortran
flags, e.g. -march=native), FC (the compiler, default gfortran).
"""
