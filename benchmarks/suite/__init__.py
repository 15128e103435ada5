"""The suite ``python -m benchmarks`` runs: one module per measurement, and the machinery that runs them."""
