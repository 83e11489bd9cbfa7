"""Storage: typed records, run directories (lock, params, resume checks) and the search store."""
