-- Silver, in two steps.
--
-- 1. silver.<table> (customers, products, orders, order_items): ecomm-db as it stood at the latest
--    extract, one row per key, typed, read from the latest version of each landed file (a
--    re-extracted partition replaces what its earlier extract said). Of the versions landed for
--    a key, the one the key snapshot names wins; a key changed after the extracted windows (empty
--    updated_at in the snapshot) keeps its latest landed version until its partition runs. A key
--    missing from the snapshot was deleted in the source and is gone. A row whose key does not
--    parse is told apart by its values: each distinct one is kept (and quarantined by valid_id).
--    A version landed twice (the lookback extracts the day before again) counts once, on the
--    ingestion date it first landed on, so a day's checks judge that day's changes.
--    Each table evaluates its data contract rules once per row: _failed_rules lists the rules a
--    row breaks, and one expectation per rule counts them (the Dagster asset checks).
-- 2. The star schema takes the rows that break no rule; silver.<table>_quarantine keeps the others,
--    with the rules they broke and the file and ingestion date they came from. A quarantined row
--    counts nowhere downstream, and an order line whose order, customer or product is quarantined
--    or missing is quarantined itself (valid_reference).
--
-- Normalisations, the same on every engine:
--   - every text column is trimmed; email is lower-cased; status is compared after lower(trim());
--   - an empty string stays an empty string (only an empty CSV field, PostgreSQL's NULL, is NULL);
--   - numbers and timestamps that do not parse become NULL (try_cast), so a rule catches them;
--   - timestamps are UTC instants; order_date is the date of ordered_at in Asia/Bangkok;
--   - a quantity must be positive (valid_quantity); a price may be zero, not negative (valid_price).
--
-- silver.source_reconciliation checks step 1 against the key snapshot, day by day.

CREATE OR REFRESH MATERIALIZED VIEW silver.customers (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id'))
)
COMMENT 'Every customer in ecomm-db at the latest extract, typed, in the version the source had then, with the rules it breaks.'
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
  QUALIFY _source_file_modified_at = max(_source_file_modified_at) OVER (PARTITION BY _source_file)
), source AS (
  SELECT try_cast(customer_id AS BIGINT) AS customer_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.customers_keys
)
SELECT
  landed.*,
  filter(array(
    if(landed.customer_id IS NOT NULL, NULL, 'valid_id')
  ), rule -> rule IS NOT NULL) AS _failed_rules  -- The data contract rules the row breaks (empty: none).
FROM landed LEFT JOIN source ON source.customer_id = landed.customer_id
WHERE landed.customer_id IS NULL OR source.customer_id IS NOT NULL
QUALIFY row_number() OVER (
  PARTITION BY landed.customer_id,
               if(landed.customer_id IS NULL, to_json(struct(landed.first_name, landed.last_name, landed.email, landed.city, landed.country, landed.created_at, landed.updated_at)), NULL)
  ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
           landed.updated_at DESC, landed._ingestion_date) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.products (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_price EXPECT (NOT array_contains(_failed_rules, 'valid_price'))
)
COMMENT 'Every product in ecomm-db at the latest extract, typed, in the version the source had then, with the rules it breaks.'
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
  QUALIFY _source_file_modified_at = max(_source_file_modified_at) OVER (PARTITION BY _source_file)
), source AS (
  SELECT try_cast(product_id AS BIGINT) AS product_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.products_keys
)
SELECT
  landed.*,
  filter(array(
    if(landed.product_id IS NOT NULL, NULL, 'valid_id'),
    if(landed.unit_price >= 0, NULL, 'valid_price')
  ), rule -> rule IS NOT NULL) AS _failed_rules
FROM landed LEFT JOIN source ON source.product_id = landed.product_id
WHERE landed.product_id IS NULL OR source.product_id IS NOT NULL
QUALIFY row_number() OVER (
  PARTITION BY landed.product_id,
               if(landed.product_id IS NULL, to_json(struct(landed.product_name, landed.category, landed.unit_price, landed.created_at, landed.updated_at)), NULL)
  ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
           landed.updated_at DESC, landed._ingestion_date) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.orders (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_status EXPECT (NOT array_contains(_failed_rules, 'valid_status'))
)
COMMENT 'Every order in ecomm-db at the latest extract, typed, in the version the source had then, with the rules it breaks.'
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
  QUALIFY _source_file_modified_at = max(_source_file_modified_at) OVER (PARTITION BY _source_file)
), source AS (
  SELECT try_cast(order_id AS BIGINT) AS order_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.orders_keys
)
SELECT
  landed.*,
  filter(array(
    if(landed.order_id IS NOT NULL AND landed.customer_id IS NOT NULL AND landed.ordered_at IS NOT NULL,
       NULL, 'valid_id'),
    if(landed.status IN ('shipped', 'delivered', 'cancelled', 'pending'), NULL, 'valid_status')
  ), rule -> rule IS NOT NULL) AS _failed_rules
FROM landed LEFT JOIN source ON source.order_id = landed.order_id
WHERE landed.order_id IS NULL OR source.order_id IS NOT NULL
QUALIFY row_number() OVER (
  PARTITION BY landed.order_id,
               if(landed.order_id IS NULL, to_json(struct(landed.customer_id, landed.ordered_at, landed.status, landed.payment_method, landed.created_at, landed.updated_at)), NULL)
  ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
           landed.updated_at DESC, landed._ingestion_date) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_customer
COMMENT 'Clean customer profile: the current version of each customer that breaks no rule.'
AS SELECT
  customer_id, first_name, last_name, email, city, country, created_at, updated_at,
  current_timestamp() AS _processed_at  -- When Silver built the row.
FROM silver.customers
WHERE size(_failed_rules) = 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_product
COMMENT 'Product details: the current name, category and list price of each product that breaks no rule.'
AS SELECT
  product_id, product_name, category, unit_price, created_at, updated_at,
  current_timestamp() AS _processed_at
FROM silver.products
WHERE size(_failed_rules) = 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.dim_orders
COMMENT 'Order details: the current status and payment method of each order that breaks no rule, and its order_date in Asia/Bangkok.'
AS SELECT
  order_id,
  customer_id,
  ordered_at,
  to_date(from_utc_timestamp(ordered_at, 'Asia/Bangkok')) AS order_date,  -- The day the order was placed, in Asia/Bangkok.
  status,
  payment_method,
  created_at,
  updated_at,
  current_timestamp() AS _processed_at
FROM silver.orders
WHERE size(_failed_rules) = 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.order_items (
  CONSTRAINT valid_id EXPECT (NOT array_contains(_failed_rules, 'valid_id')),
  CONSTRAINT valid_reference EXPECT (NOT array_contains(_failed_rules, 'valid_reference')),
  CONSTRAINT valid_price EXPECT (NOT array_contains(_failed_rules, 'valid_price')),
  CONSTRAINT valid_quantity EXPECT (NOT array_contains(_failed_rules, 'valid_quantity'))
)
COMMENT 'Every order line in ecomm-db at the latest extract, typed, in the version the source had then, with the rules it breaks. valid_reference: its order (with that order''s customer) and its product are in the star schema.'
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
  QUALIFY _source_file_modified_at = max(_source_file_modified_at) OVER (PARTITION BY _source_file)
), source AS (
  SELECT try_cast(order_item_id AS BIGINT) AS order_item_id, try_cast(updated_at AS TIMESTAMP) AS updated_at
  FROM bronze.order_items_keys
)
SELECT
  landed.*,
  filter(array(
    if(landed.order_item_id IS NOT NULL, NULL, 'valid_id'),
    if(dim_orders.order_id IS NOT NULL AND dim_customer.customer_id IS NOT NULL
       AND dim_product.product_id IS NOT NULL, NULL, 'valid_reference'),
    if(landed.item_price >= 0, NULL, 'valid_price'),
    if(landed.quantity > 0, NULL, 'valid_quantity')
  ), rule -> rule IS NOT NULL) AS _failed_rules
FROM landed
LEFT JOIN source ON source.order_item_id = landed.order_item_id
LEFT JOIN silver.dim_orders ON dim_orders.order_id = landed.order_id
LEFT JOIN silver.dim_customer ON dim_customer.customer_id = dim_orders.customer_id
LEFT JOIN silver.dim_product ON dim_product.product_id = landed.product_id
WHERE landed.order_item_id IS NULL OR source.order_item_id IS NOT NULL
QUALIFY row_number() OVER (
  PARTITION BY landed.order_item_id,
               if(landed.order_item_id IS NULL, to_json(struct(landed.order_id, landed.product_id, landed.quantity, landed.item_price, landed.created_at, landed.updated_at)), NULL)
  ORDER BY coalesce(landed.updated_at = source.updated_at, false) DESC,
           landed.updated_at DESC, landed._ingestion_date) = 1;

CREATE OR REFRESH MATERIALIZED VIEW silver.fact_orders
COMMENT 'Sales fact, one row per order line that breaks no rule: the current version of each line with its order date, customer and product.'
AS SELECT
  order_items.order_item_id,
  order_items.order_id,
  dim_orders.customer_id,
  order_items.product_id,
  dim_orders.order_date,
  order_items.quantity,
  order_items.item_price,
  order_items.updated_at,
  current_timestamp() AS _processed_at
FROM silver.order_items
JOIN silver.dim_orders ON dim_orders.order_id = order_items.order_id
WHERE size(order_items._failed_rules) = 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.customers_quarantine
COMMENT 'The rows of silver.customers that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.customers WHERE size(_failed_rules) > 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.products_quarantine
COMMENT 'The rows of silver.products that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.products WHERE size(_failed_rules) > 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.orders_quarantine
COMMENT 'The rows of silver.orders that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.orders WHERE size(_failed_rules) > 0;

CREATE OR REFRESH MATERIALIZED VIEW silver.order_items_quarantine
COMMENT 'The rows of silver.order_items that break a rule and reach no star table: each with the rules it broke (_failed_rules), the landed file and the ingestion date it came from.'
AS SELECT * FROM silver.order_items WHERE size(_failed_rules) > 0;

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
  to_date(from_utc_timestamp(source.updated_at, 'Asia/Bangkok')) AS ingestion_date,  -- The day the versions were last changed.
  source.source_table,  -- The ecomm-db table.
  count(*) AS source_rows,  -- Versions the source had at the latest extract (key snapshot).
  count_if(silver.updated_at = source.updated_at) AS silver_rows  -- How many of them Silver holds.
FROM source_versions AS source
LEFT JOIN silver_versions AS silver ON silver.source_table = source.source_table AND silver.id = source.id
-- A row without a key cannot be matched: Silver keeps every one of them, quarantined (valid_id).
WHERE source.updated_at IS NOT NULL AND source.id IS NOT NULL
GROUP BY 1, 2;

CREATE OR REFRESH MATERIALIZED VIEW silver.star_key_violations (
  CONSTRAINT unique_keys EXPECT (key IS NOT NULL AND rows = 1) ON VIOLATION FAIL UPDATE
)
COMMENT 'The primary keys of the star schema that are NULL or not unique: empty, or the update fails.'
AS SELECT
  'dim_customer' AS star_table,  -- The star table.
  customer_id AS key,  -- Its primary key value.
  count(*) AS rows  -- The rows holding it.
FROM silver.dim_customer
GROUP BY customer_id HAVING customer_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'dim_product', product_id, count(*) FROM silver.dim_product
   GROUP BY product_id HAVING product_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'dim_orders', order_id, count(*) FROM silver.dim_orders
   GROUP BY order_id HAVING order_id IS NULL OR count(*) > 1
UNION ALL
SELECT 'fact_orders', order_item_id, count(*) FROM silver.fact_orders
   GROUP BY order_item_id HAVING order_item_id IS NULL OR count(*) > 1;
