"""The one partitions definition every partitioned asset shares.

Partition ``D`` stands for the rows of ecomm-db whose ``updated_at`` falls on day ``D`` in
Asia/Bangkok (ICT). Sharing a single definition keeps a backfill of the whole graph in one run.
"""

import dagster as dg

ingestion_date_partitions = dg.DailyPartitionsDefinition(
    start_date="2025-01-01", timezone="Asia/Bangkok"
)
