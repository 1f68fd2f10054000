"""neumat: export."""
