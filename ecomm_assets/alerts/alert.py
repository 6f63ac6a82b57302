"""What an alert says: one failed check or one failed run, in words a person can act on."""

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Alert:
    id: str
    """Stable across sensor ticks: ``check:<storage id of the evaluation>`` or ``run:<run id>``."""
    title: str
    fields: dict[str, str] = field(default_factory=dict)
    """What failed and where, in reading order: asset, partition, check, counts, quarantine, run."""

    @property
    def text(self) -> str:
        return "\n".join([self.title, *(f"{name}: {value}" for name, value in self.fields.items())])

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)
