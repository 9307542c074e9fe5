"""RSITR benchmark suite (issue 7): ``python bench/run.py`` / ``make bench``. Not part of ``make test``."""
