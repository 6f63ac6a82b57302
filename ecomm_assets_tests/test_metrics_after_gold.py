"""dbt after Gold: the metrics of a day are built when Gold holds it, by the sensor that watches
Gold, and refused with the reason when Gold does not hold it."""

import dagster as dg
import pytest
from support import DAYS, NIGHTLY

from ecomm_assets.definitions import defs
from ecomm_assets.metrics.assets import gold_tables
from ecomm_assets.metrics.sensor import build_metrics_when_gold_lands

pytestmark = pytest.mark.slow


class GoldSensor:
    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def tick(self) -> dg.RunRequest | dg.SkipReason:
        context = dg.build_multi_asset_sensor_context(
            monitored_assets=gold_tables(), instance=self.instance, cursor=self.cursor, definitions=defs)
        result = build_metrics_when_gold_lands(context)
        self.cursor = context.cursor
        return result


def test_the_metrics_are_requested_once_gold_lands_and_refused_for_a_day_it_lacks(new_pipeline):
    with dg.instance_for_test() as instance:
        pipeline, sensor = new_pipeline(instance=instance), GoldSensor(instance)
        assert isinstance(sensor.tick(), dg.SkipReason)

        # The 01:00 job of three days: one dbt run of those days is asked for, once.
        pipeline.materialize(DAYS[0], DAYS[2], selection=NIGHTLY)
        request = sensor.tick()
        assert isinstance(request, dg.RunRequest)
        assert request.tags["dagster/asset_partition_range_start"] == DAYS[0]
        assert request.tags["dagster/asset_partition_range_end"] == DAYS[2]
        assert isinstance(sensor.tick(), dg.SkipReason)

        # dbt of a day Gold does not hold yet is refused before it starts.
        refused = pipeline.materialize(DAYS[2], DAYS[3], selection="group:metrics", raise_on_error=False)
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert "gold/agg_daily_sales holds no partition 2026-03-04: the lakehouse run (batch_ecomm_pipeline) " \
               "of those days has not succeeded" in failure.step_failure_data.error.to_string()
        assert not refused.get_asset_materialization_events()

        # The requested run builds them; a run that built Gold and the metrics asks for nothing more.
        pipeline.materialize(DAYS[0], DAYS[2], selection="group:metrics")
        pipeline.materialize(DAYS[3])
        skipped = sensor.tick()
        assert isinstance(skipped, dg.SkipReason) and "its metrics were built after it" in skipped.skip_message
