"""Log search (issue 11): one query language, two backends (the archive's DuckDB log tables, and SLS)."""
