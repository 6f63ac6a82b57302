"""The local stack's command line: a partition a person types is checked before anything runs
(`make run DAYS=...` asks ``python -m ecomm_assets.partitions`` first, which loads no pipeline)."""

import subprocess
import sys

import pytest

from ecomm_assets.partitions import ingestion_date_partitions, partition_range

FIRST = ingestion_date_partitions.get_first_partition_key()


@pytest.mark.parametrize("days, says", [
    ("2026-13-45", "'2026-13-45' is not a day: write YYYY-MM-DD, or FIRST...LAST for a range."),
    ("2026-03-01..2026-03-05", "'2026-03-01..2026-03-05' is not a day: write YYYY-MM-DD, or FIRST...LAST for a range."),
    ("2024-12-31", f"There is no partition 2024-12-31: the partitions run from {FIRST} to "),
    ("2026-03-05...2026-03-01", "2026-03-05...2026-03-01 is empty: its first day comes after its last."),
])
def test_days_that_name_no_partition_are_one_line_saying_why(days, says):
    refused = subprocess.run([sys.executable, "-m", "ecomm_assets.partitions", days], capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.startswith(says) and refused.stderr.count("\n") == 1, refused.stderr


def test_days_are_a_range_or_one_day():
    assert partition_range("2026-03-01...2026-03-05") == ("2026-03-01", "2026-03-05")
    assert partition_range("2026-03-04") == ("2026-03-04", "2026-03-04")
    accepted = subprocess.run([sys.executable, "-m", "ecomm_assets.partitions", "2026-03-04"], capture_output=True)
    assert accepted.returncode == 0 and accepted.stderr == b""
