"""The producer side: queueing jobs and flows, and waiting for their results."""

from __future__ import annotations

from bullworker.core.options import check_options as check_options
from bullworker.producer.flows import FlowHandle, FlowJob
from bullworker.producer.service import QueuedJob, WorkerService

__all__ = ["FlowHandle", "FlowJob", "QueuedJob", "WorkerService", "check_options"]
