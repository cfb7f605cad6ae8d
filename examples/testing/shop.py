"""Two jobs to test: one greets a user, the other signs a user up and queues the greeting."""

from __future__ import annotations

from typing import TypedDict

from bullworker import BaseJob, WorkerService, worker_job


class User(TypedDict):
    name: str


class Greeter:
    def greet(self, name: str) -> str:
        return f"Hello, {name}!"


@worker_job()
class WelcomeJob(BaseJob[User, str]):
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter

    async def handle(self, data: User) -> str:
        return self.greeter.greet(data["name"])


@worker_job()
class SignUpJob(BaseJob[User, None]):
    def __init__(self, worker_service: WorkerService) -> None:
        self.worker_service = worker_service

    async def handle(self, data: User) -> None:
        await self.worker_service.queue_job(WelcomeJob, data)
