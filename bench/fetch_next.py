"""A prototype, for measuring only: bullmq's Worker fetching the next job as it finishes one.

Node BullMQ's ``moveToFinished`` script takes the next job in the same call
(``fetchNext``), so a Node worker makes two script calls per job. The Python
port's ``Worker.processJob`` always passes ``fetch_next=False`` and then takes
the next job with a separate ``moveToActive``: three calls per job's worth of
round trips, Lua runs and reply parsing. This subclass finishes a completed job
with ``fetch_next=True`` and hands the next job back to bullmq's own run loop,
which processes whatever a finished task returns. Failures, delays and
force-closing keep bullmq's path. It is not part of bullworker: the benchmark's
``upstream`` section uses it to show what the change would be worth.
"""

from __future__ import annotations

import time
from typing import Any

from bullmq import Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError


class FetchNextWorker(Worker):  # type: ignore[misc]
    async def processJob(self, job: Any, token: str) -> Any:
        following = None
        try:
            for key in ("removeOnComplete", "removeOnFail"):
                if key not in job.opts and key in self.opts:
                    job.opts[key] = self.opts[key]
            self.jobs.add((job, token))
            self.lockManager.track_job(
                job.id, token, int(time.time() * 1000), should_create_controller=False
            )
            if job.deferredFailure:
                await job.moveToFailed(UnrecoverableError(job.deferredFailure), token)
                self.emit("failed", job, UnrecoverableError(job.deferredFailure))
                return None
            result = await self.processor(job, token)
            if not self.forceClosing:
                fetch = not (self.closing or self.paused)
                done = await self.backend.moveToCompleted(
                    job, result, job.opts.get("removeOnComplete", False), token, fetch_next=fetch
                )
                job.returnvalue = result
                job.attemptsMade += 1
                nxt = done.get("result") if fetch else None
                if nxt and nxt[0]:
                    data, job_id, limit_until, delay_until = nxt
                    following = await self.nextJobFromJobData(
                        data, job_id, limit_until or 0, delay_until or 0, token
                    )
            self.emit("completed", job, result)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as err:
            try:
                if not self.forceClosing:
                    await job.moveToFailed(err, token)
                self.emit("failed", job, err)
            except Exception as failed:
                self.emit("error", failed, job)
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
        return following
