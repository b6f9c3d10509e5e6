"""The benchmarks behind docs/benchmarks.md and docs/capacity.md, each run from the checkout as
`python -m benchmarks.<name>`; what they share is in benchmarks/common.py."""
