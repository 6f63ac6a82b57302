"""ecomm_data_pipeline: the daily e-commerce analytics pipeline as Dagster assets."""

import os
from pathlib import Path

# The checkout: dbt_project/, dlt_notebooks/ and the local state (.ecomm_home/) are found from here.
REPO_ROOT = Path(__file__).resolve().parents[1]

# A range run materializes each asset once per day. With a batch size, Dagster writes an asset's
# days in one insert instead of one per day (DagsterInstance.handle_new_event): the lakehouse step
# of a 30-day run stores its events in 6 s instead of 15. Dagster reads the variable when it stores
# an event, so setting it here reaches every process that runs our steps; the environment wins.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
