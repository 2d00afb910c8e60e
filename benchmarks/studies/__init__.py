"""Studies: one-question investigations behind the benchmarks' settings, apart from the product
benchmarks. Each writes records (``benchmarks/records/<study>/``) that ``python -m benchmarks
report`` renders in the "Studies" part of ``docs/benchmarks.md``."""
