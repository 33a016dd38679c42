"""Load tests and micro-benchmarks of the jubao server."""
