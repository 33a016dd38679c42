"""Simulation support: the fault plans tests and the simulator arm on a backend."""
