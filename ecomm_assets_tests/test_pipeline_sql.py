"""The DLT SQL reader: what Python learns from a pipeline's SQL files, read once."""

import pickle
import shutil

import pytest
from sqlglot import exp

from ecomm_assets.lakehouse.pipeline_sql import (
    DIALECT,
    LANDED,
    AutoCdc,
    Expectation,
    ReadFiles,
    is_stream,
    keep_parsed_pipeline,
    parsed_pipeline_file,
    pipeline_files,
    read_pipeline,
)

PIPELINE = """-- Things; a comment with a semicolon, before the first statement
CREATE OR REFRESH STREAMING TABLE bronze.things
COMMENT 'Every thing as landed; text only.'
TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
AS SELECT *, _metadata.file_path AS _source_file
FROM STREAM read_files('${landing_root}/things/ingestion_date=*/things__*.csv', format => 'csv', header => true,
  schema => 'thing_id STRING, name STRING, updated_at STRING');

CREATE OR REFRESH STREAMING TABLE silver.things_changes
AS SELECT try_cast(thing_id AS BIGINT) AS thing_id, name, try_cast(updated_at AS TIMESTAMP) AS updated_at,
          _source_file
FROM STREAM(bronze.things) AS landed LEFT ANTI JOIN bronze.things AS earlier ON earlier.name = landed.name;

CREATE OR REFRESH STREAMING TABLE silver.things_history;

CREATE FLOW things_history AS AUTO CDC INTO silver.things_history
FROM STREAM(silver.things_changes)
KEYS (thing_id)
APPLY AS DELETE WHEN name IS NULL
SEQUENCE BY updated_at
COLUMNS * EXCEPT (_source_file)
STORED AS SCD TYPE 2
TRACK HISTORY ON (name);

CREATE OR REFRESH MATERIALIZED VIEW silver.things (
  CONSTRAINT valid_id EXPECT (thing_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT named EXPECT (name <> ';')
)
AS SELECT thing_id, name  -- a comment; inside the query
FROM silver.things_history WHERE __END_AT IS NULL;

CREATE VIEW gold.thing_names COMMENT 'Names.' AS SELECT name FROM silver.things
"""


def test_each_table_carries_what_its_sql_says(tmp_path):
    sql = tmp_path / "things.sql"
    sql.write_text(PIPELINE)

    bronze, changes, history, silver, names = read_pipeline([sql])

    assert (bronze.name, bronze.kind, bronze.comment) == (
        "bronze.things", "streaming table", "Every thing as landed; text only.")
    assert bronze.properties == {"pipelines.reset.allowed": "false"}
    assert bronze.read_files == ReadFiles("things/ingestion_date=*/things__*.csv", {"format": "csv", "header": "true"},
                                          {"thing_id": "STRING", "name": "STRING", "updated_at": "STRING"})
    assert bronze.landing_table == "things" and bronze.key == "thing_id"
    assert f"FROM {LANDED}" in bronze.query.sql(DIALECT)  # the engines define it over the files
    assert [name for name, _ in bronze.columns] == ["thing_id", "name", "updated_at", "_rescued_data", "_source_file"]

    # STREAM(bronze.things) is read as a stream, the same table after LEFT ANTI JOIN as a whole
    assert changes.streams == ("bronze.things",)
    assert [(table.alias, is_stream(table)) for table in changes.query.find_all(exp.Table)] == [
        ("landed", True), ("earlier", False)]

    assert (history.kind, history.query, history.upstream) == ("streaming table", None, ("silver.things_changes",))
    assert history.cdc == AutoCdc("things_history", "silver.things_changes", ("thing_id",), "name IS NULL",
                                  "updated_at", ("_source_file",), 2, ("name",))
    assert history.columns == (("thing_id", "BIGINT"), ("name", "STRING"), ("updated_at", "TIMESTAMP"),
                               ("__START_AT", "TIMESTAMP"), ("__END_AT", "TIMESTAMP"))

    assert silver.read_files is None and silver.upstream == ("silver.things_history",)
    assert silver.columns == (("thing_id", "BIGINT"), ("name", "STRING"))
    assert silver.expectations == (Expectation("valid_id", "thing_id IS NOT NULL", "drop"),
                                   Expectation("named", "name <> ';'", "warn"))
    assert (names.kind, names.comment, names.upstream) == ("view", "Names.", ("silver.things",))


def test_read_files_outside_the_landing_zone_is_refused(tmp_path):
    sql = tmp_path / "bad.sql"
    sql.write_text(PIPELINE.replace("${landing_root}/things", "s3://elsewhere/things"))

    with pytest.raises(ValueError, match=r"bad.sql: bronze.things: read_files must read under \$\{landing_root\}"):
        read_pipeline([sql])


def test_a_flow_into_a_table_not_declared_before_it_is_refused(tmp_path):
    sql = tmp_path / "bad.sql"
    sql.write_text(PIPELINE.replace("CREATE OR REFRESH STREAMING TABLE silver.things_history;", ""))

    with pytest.raises(ValueError, match=r"bad.sql: flow things_history feeds silver.things_history, which must be "
                                         r"declared before it"):
        read_pipeline([sql])


def test_a_flow_naming_a_column_its_source_lacks_is_refused(tmp_path):
    sql = tmp_path / "bad.sql"
    sql.write_text(PIPELINE.replace("TRACK HISTORY ON (name)", "TRACK HISTORY ON (colour)"))

    with pytest.raises(ValueError, match=r"flow things_history names columns \['colour'\] that silver.things_changes"):
        read_pipeline([sql])


def test_the_kept_parse_is_the_parse_and_any_change_to_the_sql_asks_for_a_new_one(tmp_path):
    """`make manifest` keeps the pipeline's parse for start-ups to read instead of parsing again."""
    kept = keep_parsed_pipeline()
    assert pickle.loads(kept.read_bytes()) == read_pipeline(pipeline_files())
    copies = [shutil.copy(path, tmp_path / path.name) for path in pipeline_files()]
    unchanged = parsed_pipeline_file(copies)
    assert unchanged == kept
    copies[-1].write_text(copies[-1].read_text() + "\n-- an edit\n")
    assert parsed_pipeline_file(copies) != unchanged
