"""The DLT SQL reader: what Python learns from a pipeline's SQL files, read once."""

import pytest

from ecomm_assets.lakehouse.pipeline_sql import DIALECT, LANDED, Expectation, ReadFiles, read_pipeline

PIPELINE = """-- Things; a comment with a semicolon, before the first statement
CREATE OR REFRESH STREAMING TABLE bronze.things
COMMENT 'Every thing as landed; text only.'
AS SELECT *, _metadata.file_path AS _source_file, _metadata.file_modification_time AS _source_file_modified_at
FROM STREAM read_files('${landing_root}/things/ingestion_date=*/things.csv', format => 'csv', header => true,
  schema => 'thing_id STRING, name STRING', allowOverwrites => true);

CREATE OR REFRESH MATERIALIZED VIEW silver.things (
  CONSTRAINT valid_id EXPECT (thing_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT named EXPECT (name <> ';')
)
AS SELECT try_cast(thing_id AS BIGINT) AS thing_id, name  -- a comment; inside the query
FROM bronze.things
"""


def test_each_table_carries_what_its_sql_says(tmp_path):
    sql = tmp_path / "things.sql"
    sql.write_text(PIPELINE)

    bronze, silver = read_pipeline([sql])

    assert (bronze.name, bronze.kind, bronze.comment) == (
        "bronze.things", "streaming table", "Every thing as landed; text only.")
    assert bronze.read_files == ReadFiles("things/ingestion_date=*/things.csv",
                                          {"format": "csv", "header": "true", "allowOverwrites": "true"},
                                          {"thing_id": "STRING", "name": "STRING"})
    assert bronze.landing_table == "things" and bronze.key == "thing_id"
    assert f"FROM {LANDED}" in bronze.query.sql(DIALECT)  # the engines define it over the files
    assert [name for name, _ in bronze.columns] == [
        "thing_id", "name", "_rescued_data", "_source_file", "_source_file_modified_at"]

    assert silver.read_files is None and silver.upstream == ("bronze.things",)
    assert silver.columns == (("thing_id", "BIGINT"), ("name", "STRING"))
    assert silver.expectations == (Expectation("valid_id", "thing_id IS NOT NULL", "drop"),
                                   Expectation("named", "name <> ';'", "warn"))


def test_read_files_outside_the_landing_zone_is_refused(tmp_path):
    sql = tmp_path / "bad.sql"
    sql.write_text(PIPELINE.replace("${landing_root}/things", "s3://elsewhere/things"))

    with pytest.raises(ValueError, match=r"bad.sql: bronze.things: read_files must read under \$\{landing_root\}"):
        read_pipeline([sql])
