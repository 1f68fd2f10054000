"""neumat: fortran_umat — the ONNX flow-stress model translated to Fortran 2008 (flow stress,
J2 return mapping, Abaqus/CalculiX UMAT), compiled with gfortran and loadable from Python.

Public API: ``translate.translate(onnx_path)``, ``build.build_umat(onnx_path, out_dir=None)``,
``compiled.CompiledBackend(onnx_path)``, ``compiled.CompiledUmat(library, props)``.
"""
