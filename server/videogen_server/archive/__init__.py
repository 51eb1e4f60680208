"""Output archives: engines of the `OutputArchive` port (services/ports.py).

`memory.MemoryArchive` for tests; the obstore engine (a local directory or an S3-compatible bucket) and
`open_archive(setting, data_dir)` follow.
"""
