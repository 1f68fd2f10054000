"""neumat: benchmarks."""
