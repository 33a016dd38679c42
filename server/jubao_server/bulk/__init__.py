"""The bulk plane: datasets moved as Apache Arrow over Arrow Flight (see ARCHITECTURE.md)."""
