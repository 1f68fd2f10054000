"""neumat: fem_bridge."""
