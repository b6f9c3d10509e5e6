"""Helpers only the tests use: stand-ins, clusters, the list of fixed ports. What the benchmarks
share with the tests is in the top-level `harness` package."""

import sys

from harness import compose_stack

# tests/support/ports.py reads the compose test stack's ports as tests.support.compose_stack: that
# name is bound to the one module in harness/, so its state and constants exist once.
sys.modules[f"{__name__}.compose_stack"] = compose_stack
