"""PromQL over the archive: the parser is `promql-parser`; evaluation runs on numpy arrays of samples that a
SeriesStore (DuckDB over the compacted metric tables, or memory in tests) selects. Prometheus semantics throughout,
since users compare our panels with a live Prometheus's."""
