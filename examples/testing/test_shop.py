"""Unit tests of examples/testing/shop.py: no Redis needed (pytest with pytest-asyncio)."""

import pytest

from bullworker import AppConfig, create_app
from bullworker.testing import UnrecoverableError, queued, run_job
from examples.testing.shop import Greeter, SignUpJob, WelcomeJob

pytestmark = pytest.mark.asyncio


@pytest.fixture
def app():
    return create_app(config=AppConfig(app_env="test"), providers=[Greeter])


async def test_welcome_greets_by_name(app):
    assert await run_job(app, WelcomeJob, {"name": "Ada"}) == "Hello, Ada!"


async def test_a_payload_without_a_name_fails_as_on_the_runner(app):
    with pytest.raises(UnrecoverableError, match=r"PayloadError: .*name: Field required"):
        await run_job(app, WelcomeJob, {"nom": "Ada"})


async def test_sign_up_queues_the_welcome(app):
    await run_job(app, SignUpJob, {"name": "Ada"})
    [welcome] = queued(app, WelcomeJob)
    assert welcome.data == {"name": "Ada"}
