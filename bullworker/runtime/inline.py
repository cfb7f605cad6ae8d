"""A job run without Redis (``bullworker.testing.run_job``): what it reported goes to memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobEffects:
    """What a job run inline reported: progress values, log lines, data updates, a snooze."""

    progress: list[Any] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    data: list[Any] = field(default_factory=list)
    #: When a snoozed job would run again (epoch ms); None unless it snoozed.
    delayed_until: int | None = None


@dataclass(frozen=True, slots=True)
class InlineJob:
    """The fields and methods dispatch uses of a ``bullmq.Job`` (camelCase: bullmq's names)."""

    name: str
    id: str
    data: Any
    opts: dict[str, Any] = field(default_factory=dict)
    #: Runs before this one (``attempt - 1``).
    attemptsMade: int = 0
    #: When it was queued and when this run started (epoch ms).
    timestamp: int = 0
    processedOn: int = 0
    #: ``{"id": ..., "queueKey": "<prefix>:<queue>"}`` for a child in a flow.
    parent: dict[str, Any] | None = None
    effects: JobEffects = field(default_factory=JobEffects)
    #: A parent's completed children: job key -> (job name, or None if unknown; result).
    children: dict[str, tuple[str | None, Any]] = field(default_factory=dict)
    #: A parent's children failed and ignored: job key -> failed reason.
    ignored_failures: dict[str, str] = field(default_factory=dict)

    async def updateProgress(self, progress: Any) -> None:
        self.effects.progress.append(progress)

    async def log(self, line: str) -> int:
        self.effects.logs.append(line)
        return len(self.effects.logs)

    async def updateData(self, data: Any) -> None:
        self.effects.data.append(data)

    async def getChildrenValues(self) -> dict[str, Any]:
        return {key: value for key, (_, value) in self.children.items()}

    async def getChildrenNames(self, keys: list[str]) -> dict[str, str]:
        """Not bullmq's: what a worker reads from the children's hashes."""
        return {key: name for key in keys if (name := self.children[key][0]) is not None}

    async def getIgnoredChildrenFailures(self) -> dict[str, str]:
        return dict(self.ignored_failures)

    async def moveToDelayed(self, timestamp: int, token: str | None) -> None:
        self.effects.delayed_until = timestamp
