"""EVENT_LOOP: which event loop ``bullworker start`` runs on."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

from bullworker import ConfigError
from bullworker.runtime import loop as event_loop
from tests.helpers import app_config


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_and_uvloop_run_on_uvloop_when_it_is_installed() -> None:
    assert importlib.util.find_spec("uvloop") is not None, "the dev environment installs uvloop"
    assert event_loop.run(_loop_module(), "auto").startswith("uvloop")
    assert event_loop.run(_loop_module(), "uvloop").startswith("uvloop")
    assert event_loop.run(_loop_module(), "asyncio").startswith("asyncio")
    assert event_loop.loop_name("asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def hide_uvloop(name: str, *args: Any) -> Any:
        return None if name == "uvloop" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide_uvloop)
    assert event_loop.run(_loop_module(), "auto").startswith("asyncio")
    main = _loop_module()
    with pytest.raises(ConfigError, match=r"pip install 'bullworker\[fast\]'"):
        event_loop.run(main, "uvloop")


def test_event_loop_setting_is_checked() -> None:
    assert app_config(event_loop="asyncio").event_loop == "asyncio"
    with pytest.raises(ConfigError, match="EVENT_LOOP='trio' must be one of auto, uvloop, asyncio"):
        app_config(event_loop="trio")
