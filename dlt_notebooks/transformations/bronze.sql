-- Bronze: every landed CSV row, untyped, as Auto Loader reads it. Columns that are not in the
-- expected schema are kept in _rescued_data (schema evolution mode "rescue"), never dropped.

CREATE OR REFRESH STREAMING TABLE bronze.customers
COMMENT 'Raw customers rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/customers/',
  format => 'csv',
  header => true,
  schema => 'customer_id STRING, first_name STRING, last_name STRING, email STRING, city STRING, country STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.products
COMMENT 'Raw products rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/products/',
  format => 'csv',
  header => true,
  schema => 'product_id STRING, product_name STRING, category STRING, unit_price STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.orders
COMMENT 'Raw orders rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/orders/',
  format => 'csv',
  header => true,
  schema => 'order_id STRING, customer_id STRING, ordered_at STRING, status STRING, payment_method STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);

CREATE OR REFRESH STREAMING TABLE bronze.order_items
COMMENT 'Raw order_items rows as landed: one row per extracted version, all values as text.'
AS SELECT
  *,
  _metadata.file_path AS _source_file,
  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date,
  current_timestamp() AS _ingested_at
FROM STREAM read_files(
  '${landing_root}/order_items/',
  format => 'csv',
  header => true,
  schema => 'order_item_id STRING, order_id STRING, product_id STRING, quantity STRING, item_price STRING, created_at STRING, updated_at STRING',
  schemaEvolutionMode => 'rescue'
);
