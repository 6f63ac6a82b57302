-- Bronze: what landed, untyped, as Auto Loader reads it. Columns that are not in the expected
-- schema are kept in _rescued_data (schema evolution mode "rescue"), never dropped. The files are
-- PostgreSQL's CSV: a quoted value may hold a line break (multiLine) and a doubled quote (escape);
-- an empty field is NULL and a quoted empty string "" is ''. Spark's CSV reader would read both as
-- NULL (its nullValue is ''): nullValue is set to NUL, a character PostgreSQL text cannot hold, and
-- an empty field is still NULL.
--
-- Landed change files are immutable: a re-extract of a partition writes new files (their name
-- carries the extract id, the UTC time of the extract's snapshot of ecomm-db), so Auto Loader reads
-- each file once and never needs allowOverwrites. In an ingestion_date=YYYY-MM-DD folder (a copied
-- ingestion_date=2026-11-20.bak is not read) an extract lands <table>__<extract id>.csv, the rows
-- changed in the partition's window, and <table>_deleted__<extract id>.csv, the keys gone from
-- ecomm-db since the extract before (_deleted = t, updated_at = when the extract saw them gone, the
-- other columns empty): together the change feed of the table.
-- The streaming tables are never reset (pipelines.reset.allowed = false): a full refresh of the
-- pipeline recomputes Silver and Gold from them, and the landing zone's retention may then remove
-- a file Bronze has read.
--
-- A path the landing zone never writes (a folder such as ingestion_date=2026-02-30, which the glob
-- lets through, or a file renamed by hand) gives NULL for _ingestion_date or _extracted_at (try_cast:
-- under ANSI mode a cast would fail the whole update): Bronze keeps its rows, Silver leaves them
-- out, and bronze.unplaced_files names the file on every run until it is removed.
--
-- bronze.<table>       every row of every extract: changed rows and deleted keys
-- bronze.<table>_keys  the key snapshot of the latest extract: every primary key in ecomm-db then,
--                      with its updated_at, left empty where the change is newer than the windows
--                      extracted so far. Silver reconciles against it.

CREATE OR REFRESH STREAMING TABLE bronze.customers
COMMENT 'Raw customers changes as landed: one row per changed row and per deleted key of every extract, all values as text.'
TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
AS SELECT
  *,
  _metadata.file_path AS _source_file,  -- The landed file the row was read from.
  try_to_timestamp(regexp_extract(_metadata.file_path, '__([0-9]{8}_[0-9]{6}_[0-9]{6})[.]csv$', 1), 'yyyyMMdd_HHmmss_SSSSSS') AS _extracted_at,  -- When the extract read ecomm-db (its snapshot, UTC), from the file name.
  try_cast(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,  -- The file's partition: the day (Asia/Bangkok) the rows changed.
  current_timestamp() AS _ingested_at  -- When Bronze read the row.
FROM STREAM read_files(
  '${landing_root}/customers/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/customers*__*.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'customer_id STRING, first_name STRING, last_name STRING, email STRING, city STRING, country STRING, created_at STRING, updated_at STRING, _deleted STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.customers_keys
COMMENT 'Every customer_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file
FROM read_files(
  '${landing_root}/customers/key_snapshot/customers.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'customer_id STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.products
COMMENT 'Raw products changes as landed: one row per changed row and per deleted key of every extract, all values as text.'
TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  try_to_timestamp(regexp_extract(_metadata.file_path, '__([0-9]{8}_[0-9]{6}_[0-9]{6})[.]csv$', 1), 'yyyyMMdd_HHmmss_SSSSSS') AS _extracted_at,
  try_cast(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/products/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/products*__*.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'product_id STRING, product_name STRING, category STRING, unit_price STRING, created_at STRING, updated_at STRING, _deleted STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.products_keys
COMMENT 'Every product_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file
FROM read_files(
  '${landing_root}/products/key_snapshot/products.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'product_id STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.orders
COMMENT 'Raw orders changes as landed: one row per changed row and per deleted key of every extract, all values as text.'
TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  try_to_timestamp(regexp_extract(_metadata.file_path, '__([0-9]{8}_[0-9]{6}_[0-9]{6})[.]csv$', 1), 'yyyyMMdd_HHmmss_SSSSSS') AS _extracted_at,
  try_cast(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/orders/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/orders*__*.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_id STRING, customer_id STRING, ordered_at STRING, status STRING, payment_method STRING, created_at STRING, updated_at STRING, _deleted STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.orders_keys
COMMENT 'Every order_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file
FROM read_files(
  '${landing_root}/orders/key_snapshot/orders.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_id STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.order_items
COMMENT 'Raw order_items changes as landed: one row per changed row and per deleted key of every extract, all values as text.'
TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  try_to_timestamp(regexp_extract(_metadata.file_path, '__([0-9]{8}_[0-9]{6}_[0-9]{6})[.]csv$', 1), 'yyyyMMdd_HHmmss_SSSSSS') AS _extracted_at,
  try_cast(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/order_items/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/order_items*__*.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_item_id STRING, order_id STRING, product_id STRING, quantity STRING, item_price STRING, created_at STRING, updated_at STRING, _deleted STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.order_items_keys
COMMENT 'Every order_item_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file
FROM read_files(
  '${landing_root}/order_items/key_snapshot/order_items.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_item_id STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.rescued_columns (
  CONSTRAINT no_new_source_columns EXPECT (rows = 0)
)
COMMENT 'Columns of the landed files that the declared schema lacks (a column added in ecomm-db), rescued into _rescued_data: one row per column and ingestion date, so no_new_source_columns warns on that day and names the column. To keep it, add it to the schema here and to Silver.'
AS WITH rescued AS (
  SELECT 'customers' AS source_table, _ingestion_date, _rescued_data FROM bronze.customers
  UNION ALL
  SELECT 'products', _ingestion_date, _rescued_data FROM bronze.products
  UNION ALL
  SELECT 'orders', _ingestion_date, _rescued_data FROM bronze.orders
  UNION ALL
  SELECT 'order_items', _ingestion_date, _rescued_data FROM bronze.order_items
), rescued_columns AS (
  SELECT source_table, _ingestion_date, explode(json_object_keys(_rescued_data)) AS column_name
  FROM rescued
  WHERE _rescued_data IS NOT NULL
)
SELECT
  concat(source_table, '.', column_name) AS source_column,  -- The new column, as <source table>.<column>.
  _ingestion_date,  -- The partition whose landed files carry it.
  count(*) AS rows  -- The landed rows that hold a value in it.
FROM rescued_columns
WHERE column_name <> '_file_path'  -- read_files() adds the file's path to the rescued data
GROUP BY 1, 2;

CREATE OR REFRESH MATERIALIZED VIEW bronze.unplaced_files (
  CONSTRAINT every_file_in_a_partition EXPECT (rows = 0)
)
COMMENT 'Landed files whose path names no valid ingestion date or extract time (a folder such as ingestion_date=2026-02-30 copied by hand, a file renamed): one row per file with the rows Bronze read from it. Silver leaves those rows out, so every_file_in_a_partition fails on every run until the file is removed (its rows belong to a real day: re-run that day).'
AS SELECT
  _source_file AS source_file,  -- The landed file.
  count(*) AS rows  -- The rows Bronze read from it, in no partition.
FROM (
  SELECT _source_file, _ingestion_date, _extracted_at FROM bronze.customers
  UNION ALL
  SELECT _source_file, _ingestion_date, _extracted_at FROM bronze.products
  UNION ALL
  SELECT _source_file, _ingestion_date, _extracted_at FROM bronze.orders
  UNION ALL
  SELECT _source_file, _ingestion_date, _extracted_at FROM bronze.order_items
)
WHERE _ingestion_date IS NULL OR _extracted_at IS NULL
GROUP BY 1;

CREATE OR REFRESH MATERIALIZED VIEW bronze.landed_volume (
  CONSTRAINT usual_volume EXPECT (trailing_days < 7 OR trailing_median < 50
                                  OR rows BETWEEN trailing_median / 3 AND trailing_median * 3)
)
COMMENT 'Rows each source table landed per ingestion date (its latest extract, deleted keys left out) against the median of the 28 days before. usual_volume warns of a day with less than a third or more than three times the median, once 7 days are known and the median is 50 rows or more: a source that stopped writing, a bulk update, an extract that read the wrong window.'
AS WITH per_extract AS (
  SELECT 'customers' AS source_table, _ingestion_date, _extracted_at, count(*) AS rows
  FROM bronze.customers WHERE _deleted IS NULL GROUP BY 1, 2, 3
  UNION ALL
  SELECT 'products', _ingestion_date, _extracted_at, count(*) FROM bronze.products WHERE _deleted IS NULL GROUP BY 1, 2, 3
  UNION ALL
  SELECT 'orders', _ingestion_date, _extracted_at, count(*) FROM bronze.orders WHERE _deleted IS NULL GROUP BY 1, 2, 3
  UNION ALL
  SELECT 'order_items', _ingestion_date, _extracted_at, count(*) FROM bronze.order_items WHERE _deleted IS NULL
  GROUP BY 1, 2, 3
), latest AS (
  SELECT source_table, _ingestion_date, rows
  FROM (SELECT *, row_number() OVER (PARTITION BY source_table, _ingestion_date ORDER BY _extracted_at DESC) AS recency
        FROM per_extract)
  WHERE recency = 1
)
SELECT
  day.source_table,  -- The ecomm-db table.
  day._ingestion_date,  -- The partition.
  day.rows,  -- Rows its latest extract landed (changed rows; deleted keys left out).
  count(earlier.rows) AS trailing_days,  -- Partitions landed in the 28 days before it.
  CAST(median(earlier.rows) AS DOUBLE) AS trailing_median  -- Their median rows.
FROM latest AS day
LEFT JOIN latest AS earlier
  ON earlier.source_table = day.source_table
  AND earlier._ingestion_date < day._ingestion_date
  AND earlier._ingestion_date >= date_sub(day._ingestion_date, 28)
GROUP BY 1, 2, 3;
