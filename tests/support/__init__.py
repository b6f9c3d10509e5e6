"""Helpers only the tests use: clusters, schemas, the list of fixed ports. What the benchmarks
share with the tests is in the top-level `harness` package."""
