"""What the tests and the benchmarks both use: the service as a real process, test databases and
request bodies, the code-host stand-in, OTLP and alert receivers, polling, and the compose stack
on a real engine.

Run from the checkout, like tests/ and benchmarks/ (not installed with the service). It imports
the service and the stack package, never `tests` or `benchmarks`: tests/test_layout.py checks.
"""
