"""ecomm_data_pipeline: the daily e-commerce analytics pipeline as Dagster assets."""

from pathlib import Path

# The checkout: dbt_project/, dlt_notebooks/ and the local state (.ecomm_home/) are found from here.
REPO_ROOT = Path(__file__).resolve().parents[1]
