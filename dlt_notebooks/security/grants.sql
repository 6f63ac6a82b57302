-- Unity Catalog access to the lakehouse, run by the catalog owner on a SQL
-- warehouse before the first deploy; every statement can be run again. ${CATALOG} is the
-- deployment's catalog (ecomm_dw in prod, ecomm_dw_dev for the bundle's dev target):
--   CATALOG=ecomm_dw envsubst < security/grants.sql
--
--   data_engineers     build and run everything. The service principal that deploys the bundle
--                      and runs the pipeline, dbt and Dagster is a member.
--   analysts           read the modelled layers: silver, gold and the metrics.
--   tableau_consumers  Tableau's identity: the dbt metric tables and nothing else.
--
-- Bronze holds the landed rows as extracted (customer PII included), so like the landing zone
-- it stays with data_engineers. A grant on a schema covers its tables, present and future.

CREATE SCHEMA IF NOT EXISTS ${CATALOG}.bronze;
CREATE SCHEMA IF NOT EXISTS ${CATALOG}.silver;
CREATE SCHEMA IF NOT EXISTS ${CATALOG}.gold;
CREATE SCHEMA IF NOT EXISTS ${CATALOG}.dbt_prod_metric;
-- the pipeline's event log (batch_ecomm_pipeline_event_log): row counts, expectations, errors
CREATE SCHEMA IF NOT EXISTS ${CATALOG}.ops;

-- The landing zone, s3://<bucket>/ecomm_db_extracts/, is the READ ONLY external location
-- ecomm_landing over the storage credential whose IAM role landing_bucket_policy.json names.
-- Only data engineers (and so the pipeline) may read its files through Unity Catalog.
GRANT READ FILES ON EXTERNAL LOCATION ecomm_landing TO `data_engineers`;

GRANT USE CATALOG ON CATALOG ${CATALOG} TO `data_engineers`;
GRANT USE CATALOG ON CATALOG ${CATALOG} TO `analysts`;
GRANT USE CATALOG ON CATALOG ${CATALOG} TO `tableau_consumers`;

GRANT ALL PRIVILEGES ON SCHEMA ${CATALOG}.bronze TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ${CATALOG}.silver TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ${CATALOG}.gold TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ${CATALOG}.dbt_prod_metric TO `data_engineers`;
GRANT ALL PRIVILEGES ON SCHEMA ${CATALOG}.ops TO `data_engineers`;

GRANT USE SCHEMA, SELECT ON SCHEMA ${CATALOG}.silver TO `analysts`;
GRANT USE SCHEMA, SELECT ON SCHEMA ${CATALOG}.gold TO `analysts`;
GRANT USE SCHEMA, SELECT ON SCHEMA ${CATALOG}.dbt_prod_metric TO `analysts`;

-- dbt also grants SELECT on each metric table it builds (dbt_project.yml, +grants).
GRANT USE SCHEMA, SELECT ON SCHEMA ${CATALOG}.dbt_prod_metric TO `tableau_consumers`;
