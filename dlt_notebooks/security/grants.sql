-- Unity Catalog access to the lakehouse (SPEC section 10), run by the catalog owner on a SQL
-- warehouse before the first deploy; every statement can be run again.
--
--   data_engineers     build and run everything. The service principal that deploys the bundle
--                      and runs the pipeline, dbt and Dagster is a member.
--   analysts           read the modelled layers: silver, gold and the metrics.
--   tableau_consumers  Tableau's identity: the dbt metric tables and nothing else.
--
-- Bronze holds the landed rows as extracted (customer PII included), so like the landing zone
-- it stays with data_engineers. A grant on a schema covers its tables, present and future.

CREATE SCHEMA IF NOT EXISTS ecomm_dw.bronze;
CREATE SCHEMA IF NOT EXISTS ecomm_dw.silver;
CREATE SCHEMA IF NOT EXISTS ecomm_dw.gold;
CREATE SCHEMA IF NOT EXISTS ecomm_dw.dbt_prod_metric;

-- The landing zone, s3://<bucket>/ecomm_db_extracts/, is the READ ONLY external location
-- ecomm_landing over the storage credential whose IAM role landing_bucket_policy.json names.
-- Only data engineers (and so the pipeline) may read its files through Unity Catalog.
GRANT READ FILES ON EXTERNAL LOCATION ecomm_landing TO `data_engineers`;

GRANT USE CATALOG ON CATALOG ecomm_dw TO `data_engineers`;
GRANT USE CATALOG ON CATALOG ecomm_dw TO `analysts`;
GRANT USE CATALOG ON CATALOG ecomm_dw TO `tableau_consumers`;

GRANT ALL PRIVILEGES ON SCHEMA ecomm_dw.bronze TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ecomm_dw.silver TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ecomm_dw.gold TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ecomm_dw.dbt_prod_metric TO `data_engineers`;

GRANT USE SCHEMA, SELECT ON SCHEMA ecomm_dw.silver TO `analysts`;
GRANT USE SCHEMA, SELECT ON SCHEMA ecomm_dw.gold TO `analysts`;
GRANT USE SCHEMA, SELECT ON SCHEMA ecomm_dw.dbt_prod_metric TO `analysts`;

-- dbt also grants SELECT on each metric table it builds (dbt_project.yml, +grants).
GRANT USE SCHEMA, SELECT ON SCHEMA ecomm_dw.dbt_prod_metric TO `tableau_consumers`;
