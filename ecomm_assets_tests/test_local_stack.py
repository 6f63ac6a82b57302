"""The local stack's command line: a partition a person types is checked before anything runs."""

import pytest

from ecomm_assets.local_stack import _partition_range
from ecomm_assets.partitions import ingestion_date_partitions

FIRST = ingestion_date_partitions.get_first_partition_key()


@pytest.mark.parametrize("days, says", [
    ("2026-13-45", "'2026-13-45' is not a day: write YYYY-MM-DD, or FIRST...LAST for a range."),
    ("2026-03-01..2026-03-05", "'2026-03-01..2026-03-05' is not a day: write YYYY-MM-DD, or FIRST...LAST for a range."),
    ("2024-12-31", f"There is no partition 2024-12-31: the partitions run from {FIRST} to "),
    ("2026-03-05...2026-03-01", "2026-03-05...2026-03-01 is empty: its first day comes after its last."),
])
def test_days_that_name_no_partition_are_one_line_saying_why(days, says):
    with pytest.raises(SystemExit) as refused:
        _partition_range(days)
    assert refused.value.code.startswith(says) and "\n" not in refused.value.code


def test_days_are_a_range_or_one_day():
    assert _partition_range("2026-03-01...2026-03-05") == ("2026-03-01", "2026-03-05")
    assert _partition_range("2026-03-04") == ("2026-03-04", "2026-03-04")
