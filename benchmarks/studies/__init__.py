"""Studies run on their own, one question each: ``python -m benchmarks.studies.NAME``."""
