"""Simulation support: fault plans for the backends, a simulated clock and a virtual-time event loop."""
