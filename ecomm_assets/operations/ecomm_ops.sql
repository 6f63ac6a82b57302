-- The operations metrics store (schema ecomm_ops): what each Dagster run of the pipeline did, one
-- row per fact, keyed so that writing a run twice writes nothing twice. export_run_metrics fills it.

CREATE SCHEMA IF NOT EXISTS ecomm_ops;

CREATE TABLE IF NOT EXISTS ecomm_ops.runs (
    run_id           text PRIMARY KEY,
    job_name         text NOT NULL,
    status           text NOT NULL,              -- SUCCESS, FAILURE or CANCELED
    partition_start  text,                       -- the run's first ingestion date (NULL: not partitioned)
    partition_end    text,                       -- its last
    started_at       timestamptz,
    ended_at         timestamptz,
    duration_seconds double precision
);
COMMENT ON TABLE ecomm_ops.runs IS 'One row per ended Dagster run: job, status, ingestion dates, duration.';

CREATE TABLE IF NOT EXISTS ecomm_ops.steps (
    run_id           text NOT NULL REFERENCES ecomm_ops.runs,
    step_key         text NOT NULL,              -- landing_extracts, batch_ecomm_pipeline_tables, metric_models, ...
    status           text,                       -- SUCCESS, FAILURE, SKIPPED
    attempts         integer,                    -- 1 + the retries it took
    started_at       timestamptz,
    ended_at         timestamptz,
    duration_seconds double precision,
    PRIMARY KEY (run_id, step_key)
);
COMMENT ON TABLE ecomm_ops.steps IS 'One row per step of each run: status, attempts, duration.';

CREATE TABLE IF NOT EXISTS ecomm_ops.asset_metrics (
    run_id     text NOT NULL REFERENCES ecomm_ops.runs,
    asset_key  text NOT NULL,                    -- bronze/orders, silver/data_quality, ...
    partition  text NOT NULL,                    -- the ingestion date ('' for an asset without one)
    metric     text NOT NULL,                    -- a numeric metadata entry: dagster/row_count, quality_score_orders, ...
    value      double precision NOT NULL,
    PRIMARY KEY (run_id, asset_key, partition, metric)
);
COMMENT ON TABLE ecomm_ops.asset_metrics IS 'The numbers each materialization of a run reported, per asset and ingestion date: rows landed, ingested, in each table, dropped, quality scores.';

CREATE TABLE IF NOT EXISTS ecomm_ops.check_results (
    run_id         text NOT NULL REFERENCES ecomm_ops.runs,
    asset_key      text NOT NULL,
    check_name     text NOT NULL,
    partition      text NOT NULL,                -- '' for a check of the whole table
    passed         boolean NOT NULL,
    severity       text NOT NULL,                -- ERROR or WARN
    failed_records double precision,             -- the day's failing rows where the check counts them
    PRIMARY KEY (run_id, asset_key, check_name, partition)
);
COMMENT ON TABLE ecomm_ops.check_results IS 'Every asset check evaluation of each run (expectations, manifest, reconciliation, dbt tests, freshness).';

CREATE TABLE IF NOT EXISTS ecomm_ops.dbu_usage (
    usage_date date NOT NULL,
    resource   text NOT NULL,                    -- pipeline (the DLT pipeline) or warehouse (the SQL warehouse)
    dbus       double precision NOT NULL,
    PRIMARY KEY (usage_date, resource)
);
COMMENT ON TABLE ecomm_ops.dbu_usage IS 'DBUs the DLT pipeline and the SQL warehouse used per day, from Databricks'' billing system table (system.billing.usage); production only.';
