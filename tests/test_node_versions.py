"""What bullworker makes of the Node BullMQ version a queue's meta records (no Redis)."""

from __future__ import annotations

import pytest

from bullworker.transport.bullmq_compat.node_versions import (
    NEWEST_TESTED,
    OLDEST_SUPPORTED,
    NodeBullmq,
    refusal,
    supported_range,
    warning,
)


@pytest.mark.parametrize(
    ("raw", "paused_list", "support", "legacy"),
    [
        (None, False, "none", False),  # no Node BullMQ, or bullworker alone (the port writes none)
        (None, True, "unrecorded", True),  # a paused list: a Node BullMQ before 5.20
        ("bullmq:5.19.9", False, "old", True),
        ("bullmq:4.18.0", False, "old", True),
        ("bullmq:5.20.0", False, "legacy", True),
        ("bullmq:5.81.5", False, "legacy", True),
        ("bullmq:6.0.0", False, "supported", False),
        ("bullmq:6.7.6", False, "supported", False),
        ("bullmq:6.7.0", True, "supported", True),  # 6.x wrote last, but a 5.x list is there
        ("bullmq:6.8.0", False, "newer", False),
        ("bullmq:7.0.0", False, "newer", False),
        ("bullmq-pro:7.38.0", False, "unknown", False),
        ("bullmq:", False, "unknown", False),
    ],
)
def test_support_and_layout(raw: str | None, paused_list: bool, support: str, legacy: bool) -> None:
    node = NodeBullmq(raw=raw, paused_list=paused_list)
    assert node.support == support
    assert node.legacy_layout is legacy


def test_the_range_is_the_tested_one() -> None:
    assert OLDEST_SUPPORTED == (5, 20, 0)
    assert NEWEST_TESTED == (6, 7, 0)
    assert supported_range() == "5.20.0 to 6.7.x"


def test_names() -> None:
    assert NodeBullmq(raw="bullmq:5.81.5").name == "Node BullMQ 5.81.5"
    assert NodeBullmq(raw="bullmq-pro:7.38.0").name == "'bullmq-pro:7.38.0'"
    assert NodeBullmq(raw=None).name == "a Node BullMQ that records no version"


def test_refusal_is_one_line_naming_the_version() -> None:
    text = refusal("emails", NodeBullmq(raw="bullmq:4.18.0"))
    assert "\n" not in text
    assert text == (
        "queue emails is shared with Node BullMQ 4.18.0, older than 5.20.0, whose resume can "
        "drop the jobs bullworker queues while it is paused; upgrade that service to Node "
        "BullMQ 5.20.0 to 6.7.x"
    )


def test_warnings() -> None:
    assert warning("q", NodeBullmq(raw=None)) is None
    assert warning("q", NodeBullmq(raw="bullmq:6.7.0")) is None
    legacy = warning("q", NodeBullmq(raw="bullmq:5.81.5"))
    assert legacy is not None and "Node BullMQ 5.81.5" in legacy and "\n" not in legacy
    assert "'bullworker queues resume' keeps them" in legacy
    unrecorded = warning("q", NodeBullmq(raw=None, paused_list=True))
    assert unrecorded is not None and "older than 5.20" in unrecorded
    assert warning("q", NodeBullmq(raw="bullmq:4.1.0")) == refusal("q", NodeBullmq("bullmq:4.1.0"))
    newer = warning("q", NodeBullmq(raw="bullmq:7.0.0"))
    assert newer is not None and "newer than the newest tested (6.7.0;" in newer
    unknown = warning("q", NodeBullmq(raw="bullmq-pro:7.38.0"))
    assert unknown is not None and "not Node BullMQ" in unknown
