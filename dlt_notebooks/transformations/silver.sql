-- Silver, in two steps.
--
-- 1. silver.<table>: ecomm-db as it stood at the latest extract, one row per key, typed. Of the
--    versions landed for a key, the one the key snapshot names wins; a key changed after the
--    extracted windows (empty updated_at in the snapshot) keeps its latest landed version until
--    its partition runs. A key missing from the snapshot was deleted in the source and is gone.
--    Rows whose key does not parse are all kept, so that valid_id drops and counts each one.
--    Normalisations: text is trimmed, email lower-cased, status lower(trim()); an empty string
--    stays an empty string; timestamps are UTC instants.
-- 2. The star schema on top, with the expectations. A row that fails an expectation is dropped
--    and counts nowhere downstream; each expectation's failures are in the pipeline's event log
--    (and in the Dagster asset checks).
--
-- silver.source_reconciliation then checks step 1 against the key snapshot, day by day.

CREATE OR REFRESH MATERIALIZED VIEW silver.customers
COMMENT 'Every customer in ecomm-db at the latest extract, typed, in the version the source had then.'
AS WITH landed AS (
  SELECT
    try_cast(customer_id AS BIGINT) AS customer_id,
    trim(first_name) AS first_name,
    trim(last_name) AS last_name,
    lower(trim(email)) AS email,
    trim(city) AS city,
    trim(country) AS country,
    try_cast(created_at AS TIMESTAMP) AS created_at,
    try_cast(updated_at AS TIMESTAMP) AS updated_at,
    _ingestion_date,
    _source_file
  FROM bronze.customers
), source AS (
  SELECT try_cast(customer_id AS BIGINT) AS customer_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.customers_keys
)
SELECT landed.*
FROM landed LEFT JOIN source ON source.customer_id = landed.customer_id
WHERE landed.customer_id IS NULL OR source.customer_id IS NOT NULL
QUALIFY landed.customer_id IS NULL
  OR row_number() OVER (PARTITION BY landed.customer_id
                        ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
                                 landed.updated_at DESC, landed._ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.products
COMMENT 'Every product in ecomm-db at the latest extract, typed, in the version the source had then.'
AS WITH landed AS (
  SELECT
    try_cast(product_id AS BIGINT) AS product_id,
    trim(product_name) AS product_name,
    trim(category) AS category,
    try_cast(unit_price AS DECIMAL(12, 2)) AS unit_price,
    try_cast(created_at AS TIMESTAMP) AS created_at,
    try_cast(updated_at AS TIMESTAMP) AS updated_at,
    _ingestion_date,
    _source_file
  FROM bronze.products
), source AS (
  SELECT try_cast(product_id AS BIGINT) AS product_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.products_keys
)
SELECT landed.*
FROM landed LEFT JOIN source ON source.product_id = landed.product_id
WHERE landed.product_id IS NULL OR source.product_id IS NOT NULL
QUALIFY landed.product_id IS NULL
  OR row_number() OVER (PARTITION BY landed.product_id
                        ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
                                 landed.updated_at DESC, landed._ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.orders
COMMENT 'Every order in ecomm-db at the latest extract, typed, in the version the source had then.'
AS WITH landed AS (
  SELECT
    try_cast(order_id AS BIGINT) AS order_id,
    try_cast(customer_id AS BIGINT) AS customer_id,
    try_cast(ordered_at AS TIMESTAMP) AS ordered_at,
    lower(trim(status)) AS status,
    trim(payment_method) AS payment_method,
    try_cast(created_at AS TIMESTAMP) AS created_at,
    try_cast(updated_at AS TIMESTAMP) AS updated_at,
    _ingestion_date,
    _source_file
  FROM bronze.orders
), source AS (
  SELECT try_cast(order_id AS BIGINT) AS order_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.orders_keys
)
SELECT landed.*
FROM landed LEFT JOIN source ON source.order_id = landed.order_id
WHERE landed.order_id IS NULL OR source.order_id IS NOT NULL
QUALIFY landed.order_id IS NULL
  OR row_number() OVER (PARTITION BY landed.order_id
                        ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
                                 landed.updated_at DESC, landed._ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.order_items
COMMENT 'Every order line in ecomm-db at the latest extract, typed, in the version the source had then.'
AS WITH landed AS (
  SELECT
    try_cast(order_item_id AS BIGINT) AS order_item_id,
    try_cast(order_id AS BIGINT) AS order_id,
    try_cast(product_id AS BIGINT) AS product_id,
    try_cast(quantity AS INT) AS quantity,
    try_cast(item_price AS DECIMAL(12, 2)) AS item_price,
    try_cast(created_at AS TIMESTAMP) AS created_at,
    try_cast(updated_at AS TIMESTAMP) AS updated_at,
    _ingestion_date,
    _source_file
  FROM bronze.order_items
), source AS (
  SELECT try_cast(order_item_id AS BIGINT) AS order_item_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.order_items_keys
)
SELECT landed.*
FROM landed LEFT JOIN source ON source.order_item_id = landed.order_item_id
WHERE landed.order_item_id IS NULL OR source.order_item_id IS NOT NULL
QUALIFY landed.order_item_id IS NULL
  OR row_number() OVER (PARTITION BY landed.order_item_id
                        ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
                                 landed.updated_at DESC, landed._ingestion_date DESC) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.source_reconciliation (
  CONSTRAINT in_sync EXPECT (silver_rows = source_rows)
)
COMMENT 'Silver against ecomm-db, per day of updated_at (Asia/Bangkok) and source table: source_rows are the versions the source had at the latest extract (the key snapshot), silver_rows those of them Silver holds. A day out of sync lost a change on the way (committed later than the lookback, or never extracted): re-run the partition of that ingestion_date.'
AS WITH source_versions AS (
  SELECT 'customers' AS source_table, try_cast(customer_id AS BIGINT) AS id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.customers_keys
  UNION ALL
  SELECT 'products', try_cast(product_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.products_keys
  UNION ALL
  SELECT 'orders', try_cast(order_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.orders_keys
  UNION ALL
  SELECT 'order_items', try_cast(order_item_id AS BIGINT), try_cast(updated_at AS TIMESTAMP) FROM bronze.order_items_keys
), silver_versions AS (
  SELECT 'customers' AS source_table, customer_id AS id, updated_at FROM silver.customers
  UNION ALL
  SELECT 'products', product_id, updated_at FROM silver.products
  UNION ALL
  SELECT 'orders', order_id, updated_at FROM silver.orders
  UNION ALL
  SELECT 'order_items', order_item_id, updated_at FROM silver.order_items
)
SELECT
  to_date(from_utc_timestamp(source.updated_at, 'Asia/Bangkok')) AS ingestion_date,
  source.source_table,
  count(*) AS source_rows,
  count_if(silver.updated_at = source.updated_at) AS silver_rows
FROM source_versions AS source
LEFT JOIN silver_versions AS silver ON silver.source_table = source.source_table AND silver.id = source.id
WHERE source.updated_at IS NOT NULL
GROUP BY 1, 2;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_customer (
  CONSTRAINT valid_id EXPECT (customer_id IS NOT NULL) ON VIOLATION DROP ROW
)
COMMENT 'Clean customer profile: the current version of each customer.'
AS SELECT
  customer_id, first_name, last_name, email, city, country, created_at, updated_at,
  current_timestamp() AS _processed_at
FROM silver.customers;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_product (
  CONSTRAINT valid_id EXPECT (product_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_price EXPECT (unit_price >= 0) ON VIOLATION DROP ROW
)
COMMENT 'Product details: the current name, category and list price of each product.'
AS SELECT
  product_id, product_name, category, unit_price, created_at, updated_at,
  current_timestamp() AS _processed_at
FROM silver.products;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_orders (
  CONSTRAINT valid_id EXPECT (order_id IS NOT NULL AND customer_id IS NOT NULL AND ordered_at IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_status EXPECT (status IN ('shipped', 'delivered', 'cancelled', 'pending')) ON VIOLATION DROP ROW
)
COMMENT 'Order details: the current status and payment method of each order, and its order_date in Asia/Bangkok.'
AS SELECT
  order_id,
  customer_id,
  ordered_at,
  to_date(from_utc_timestamp(ordered_at, 'Asia/Bangkok')) AS order_date,
  status,
  payment_method,
  created_at,
  updated_at,
  current_timestamp() AS _processed_at
FROM silver.orders;

CREATE OR REFRESH MATERIALIZED VIEW silver.fact_orders (
  CONSTRAINT valid_id EXPECT (order_item_id IS NOT NULL AND order_id IS NOT NULL AND customer_id IS NOT NULL AND product_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_price EXPECT (item_price >= 0 AND quantity > 0) ON VIOLATION DROP ROW
)
COMMENT 'Sales fact, one row per order item: the current version of each line with its order, customer and product resolved. A line whose order, customer or product is missing or was dropped fails valid_id.'
AS SELECT
  order_items.order_item_id,
  dim_orders.order_id,
  dim_customer.customer_id,
  dim_product.product_id,
  dim_orders.order_date,
  order_items.quantity,
  order_items.item_price,
  order_items.updated_at,
  current_timestamp() AS _processed_at
FROM silver.order_items
LEFT JOIN silver.dim_orders ON dim_orders.order_id = order_items.order_id
LEFT JOIN silver.dim_customer ON dim_customer.customer_id = dim_orders.customer_id
LEFT JOIN silver.dim_product ON dim_product.product_id = order_items.product_id;
