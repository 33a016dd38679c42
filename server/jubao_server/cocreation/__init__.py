"""Data co-creation: clean-room collaborations where members join their datasets on keyed tokens and
receive aggregates under each owner's analysis rule, never each other's rows (see ARCHITECTURE.md)."""
