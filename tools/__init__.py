"""The project's scripts, importable (tools.fetch_vector_sets) by tests and benches without sys.path edits."""
