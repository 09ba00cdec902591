"""EDM network snapshots (``network-snapshot-*.pkl``): a restricted reader that runs
none of their code, and a writer of the same format for tests and benchmarks."""
