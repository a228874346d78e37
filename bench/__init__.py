"""Benchmarks, run as modules from the repository root so `api` and `tests` import as they do in the
suite, with no sys.path edits: `.venv/bin/python -m bench.<name> --help` (the module's docstring)."""
