"""The benchmarks of pyro_circuits and the records of what they measured.

* ``benchmarks/<name>.py``: the product benchmarks (``make bench`` lists their commands);
  ``benchmarks/studies/``: one-question investigations behind their settings.
* ``benchmarks/calcium_data.py``: the data and ladder set-up the calcium benchmark and the
  studies share (a module; scripts never import each other).
* ``benchmarks/records.py``: every benchmark writes its figures as records,
  ``benchmarks/records/<benchmark>/<variant>.json``.
* ``python -m benchmarks report`` (``benchmarks/report/``, tables by ``benchmarks/tables.py``):
  ``docs/benchmarks.md`` from the records alone; ``--check`` fails when it is stale.
"""
