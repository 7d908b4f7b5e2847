

# --- compacted tables --------------------------------------------------------------------------------------------

def test_compacted_keys_round_trip():
    ref = SessionRef("default", "c", "session_2026-01-01_00-00-00_000000_1")
    for version, name in [(compacted.COMPACTION_VERSION, compacted.INFO_FILE), (3, compacted.JOBS.file)]:
        assert parse_compacted_key(ref.compacted_key(version, name), ref) == (version, name)
    assert parse_compacted_key(ref.manifest_key, ref) is None
    assert parse_compacted_key(ref.compacted_prefix(9) + "sub/x.parquet", ref) is None
    with pytest.raises(InvalidName):
        ref.compacted_key(9, "../x")


def test_compacted_registry():
    assert len(set(compacted.TABLE_NAMES)) == len(compacted.TABLES)
    assert all(compacted.parse_file_name(t.file) is t and compacted.table(t.name) is t for t in compacted.TABLES)
    assert compacted.parse_file_name(compacted.INFO_FILE) is None
    # A table changed in a new version needs the new version: the cache is rebuilt, never migrated.
    assert max(t.version for t in compacted.TABLES) <= compacted.COMPACTION_VERSION
    with pytest.raises(KeyError, match="the tables are tasks, "):
        compacted.table("task")


def test_compaction_writes_every_registered_table_in_its_schema(tmp_path):
    """The builders write exactly the registry's files, in the registry's columns. DuckDB writes the tasks table
    with its own types for two columns (read back as the registry's by every reader)."""
    from archive.storage.local import LocalStore
    from historyserver.compaction.build import compact

    ref = SessionRef("default", "c", "session_2026-01-01_00-00-00_000000_1")
    info = compact(LocalStore(tmp_path / "archive"), ref, tmp_path / "t", 1_000)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        [t.file for t in compacted.TABLES] + [compacted.INFO_FILE])
    assert info["compaction_version"] == compacted.COMPACTION_VERSION
    duckdb_types = {("tasks", "attempt_number"): pa.int32(), ("tasks", "record"): "extension<arrow.json>"}
    for t in compacted.TABLES:
        written = pq.read_schema(tmp_path / "t" / t.file)
        assert written.names == t.schema.names, t.name
        for field in t.schema:
            expected = duckdb_types.get((t.name, field.name), field.type)
            assert str(written.field(field.name).type) == str(expected), (t.name, field.name)
