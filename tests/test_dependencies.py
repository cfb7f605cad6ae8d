"""A job whose constructor cannot be built: the message names the job, the parameter, the type."""

from __future__ import annotations

from typing import Any

import pytest

from bullworker import AppConfig, BaseJob, DependencyError, JobRegistry, create_app, worker_job

registry = JobRegistry()


class Settings:
    def __init__(self, key: str) -> None:
        self.key = key


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


@worker_job(registry=registry)
class SendEmail(BaseJob[Any, None]):
    def __init__(self, mailer: Mailer, retries: int = 3) -> None:
        self.mailer = mailer

    async def handle(self, data: Any) -> None: ...


@worker_job(registry=registry)
class Untyped(BaseJob[Any, None]):
    def __init__(self, mailer) -> None:  # no annotation, on purpose
        self.mailer = mailer

    async def handle(self, data: Any) -> None: ...


def _app(*providers: Any) -> Any:
    return create_app(
        config=AppConfig(environ={}), registry=registry, providers=providers, tracing=False
    )


def test_a_type_nothing_provides() -> None:
    with pytest.raises(DependencyError) as caught:
        _app().build_job(SendEmail)
    assert str(caught.value) == (
        "missing dependency of SendEmail: parameter 'mailer' needs Mailer, which is not "
        "provided; provide it with create_app(providers=[...]) or app.provide(Mailer, instance)"
    )


def test_a_provided_class_whose_own_parameter_is_missing() -> None:
    with pytest.raises(DependencyError) as caught:
        _app(Mailer).build_job(SendEmail)
    assert str(caught.value) == (
        "missing dependency of SendEmail: parameter 'mailer' needs Mailer, whose parameter "
        "'settings' needs Settings, which is not provided; provide it with "
        "create_app(providers=[...]) or app.provide(Settings, instance)"
    )


def test_everything_provided() -> None:
    job = _app(Mailer, Settings("k")).build_job(SendEmail)
    assert isinstance(job, SendEmail) and job.mailer.settings.key == "k"


def test_a_parameter_without_annotation() -> None:
    with pytest.raises(DependencyError, match="parameter 'mailer' has no type annotation"):
        _app(Mailer).build_job(Untyped)


def test_resolve_names_what_is_missing() -> None:
    with pytest.raises(DependencyError) as caught:
        _app().resolve(Mailer)
    assert str(caught.value).startswith("cannot resolve Mailer: Mailer is not provided; ")
