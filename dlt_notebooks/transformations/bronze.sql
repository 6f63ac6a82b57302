-- Bronze: what landed, untyped, as Auto Loader reads it. Columns that are not in the expected
-- schema are kept in _rescued_data (schema evolution mode "rescue"), never dropped. The files are
-- PostgreSQL's CSV: a quoted value may hold a line break (multiLine) and a doubled quote (escape);
-- an empty field is NULL and a quoted empty string "" is ''. Spark's CSV reader would read both as
-- NULL (its nullValue is ''): nullValue is set to NUL, a character PostgreSQL text cannot hold, and
-- an empty field is still NULL.
--
-- bronze.<table>       every row of every version of every landed partition file
--                      (ingestion_date=YYYY-MM-DD/<table>.csv, nothing else: a copied folder such as
--                      ingestion_date=2026-11-20.bak is not read). A re-extracted partition rewrites
--                      its file; allowOverwrites reads the new version too (by default Auto Loader
--                      reads a path once and a backfill would never arrive). The versions stay side
--                      by side, told apart by _source_file_modified_at; Silver reads the latest.
-- bronze.<table>_keys  the key snapshot of the latest extract: every primary key in ecomm-db then,
--                      with its updated_at, left empty where the change is newer than the windows
--                      extracted so far. Silver drops the keys that are not in it (hard deletes) and
--                      reconciles against it.

CREATE OR REFRESH STREAMING TABLE bronze.customers
COMMENT 'Raw customers rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,  -- The landed file the row was read from.
  _metadata.file_modification_time AS _source_file_modified_at,  -- When that file was written: tells a re-extract's versions apart.
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,  -- The file's partition: the day (Asia/Bangkok) the rows changed.
  current_timestamp() AS _ingested_at  -- When Bronze read the row.
FROM STREAM read_files(
  '${landing_root}/customers/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/customers.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'customer_id STRING, first_name STRING, last_name STRING, email STRING, city STRING, country STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue',
  allowOverwrites => true
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.customers_keys
COMMENT 'Every customer_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at
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
COMMENT 'Raw products rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/products/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/products.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'product_id STRING, product_name STRING, category STRING, unit_price STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue',
  allowOverwrites => true
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.products_keys
COMMENT 'Every product_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at
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
COMMENT 'Raw orders rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/orders/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/orders.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_id STRING, customer_id STRING, ordered_at STRING, status STRING, payment_method STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue',
  allowOverwrites => true
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.orders_keys
COMMENT 'Every order_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at
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
COMMENT 'Raw order_items rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/order_items/ingestion_date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/order_items.csv',
  format => 'csv',
  header => true,
  multiLine => true,
  escape => '"',
  nullValue => '\u0000',
  schema => 'order_item_id STRING, order_id STRING, product_id STRING, quantity STRING, item_price STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue',
  allowOverwrites => true
);

CREATE OR REFRESH MATERIALIZED VIEW bronze.order_items_keys
COMMENT 'Every order_item_id in ecomm-db at the latest extract, with its updated_at (empty when that is newer than the extracted windows), as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  _metadata.file_modification_time AS _source_file_modified_at
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
