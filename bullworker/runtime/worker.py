"""The worker a runner runs per queue.

It subclasses bullmq's Worker and overrides its fetch loop's internals, so it
lives in the BullMQ seam (:mod:`bullworker.transport.bullmq_compat.worker`);
this module is its name in the runtime layer.
"""

from __future__ import annotations

from bullworker.transport.bullmq_compat.worker import BullWorker, MalformedJobError

__all__ = ["BullWorker", "MalformedJobError"]
