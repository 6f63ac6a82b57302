"""The alert log: every alert as a log line and a JSON line in ``<ECOMM_HOME>/alerts.jsonl``."""

import logging
from pathlib import Path

from ecomm_assets.alerts.alert import Alert


class AlertLog:
    def __init__(self, path: str, log: logging.Logger):
        self.path = Path(path)
        self.log = log

    def send(self, alert: Alert) -> None:
        self.log.warning(alert.text)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(alert.to_json() + "\n")

    def close(self) -> None:
        pass
