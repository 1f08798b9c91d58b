"""`floodgate status` on whether Floodgate keeps up (pure): lag, last decision and failed deliveries, in plain
words."""

from __future__ import annotations

from floodgate.adapters.arming import Armed
from floodgate.adapters.failure_queue import Backlog
from floodgate.adapters.health import Health
from floodgate.cli.status import Overview, keeping_up_json, keeping_up_text
from floodgate.engine.results import Status

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00Z
ALARM = Armed("Floodgate-early-warning", NOW - 900, NOW + 900, "Threshold Crossed")


def overview(health: Health, backlog: Backlog | None, *armings: Armed) -> Overview:
    return Overview("Floodgate", armings, None, Status(NOW, False, ()), health=health, backlog=backlog)


def test_a_deployment_keeping_up_says_so() -> None:
    health = Health(
        newest_end=NOW - 420,
        stored_at=NOW - 30,
        decision_at=NOW - 20,
        decision_ok=True,
        outcome="DENY, 2 planned: 2 BLOCK",
        completed_at=NOW - 20,
    )
    view = overview(health, Backlog(0, 0, None), ALARM)
    assert keeping_up_text(view) == [
        "flow logs: behind by 7m (newest record stored ended 2025-11-24 15:53:00Z)",
        "last decision: 2025-11-24 15:59:40Z (20s ago), completed: DENY, 2 planned: 2 BLOCK",
        "failed deliveries: none waiting",
    ]
    report = keeping_up_json(view)
    assert report["ingest_lag_s"] == 420.0 and report["behind"] is False
    assert report["decisions_overdue"] is False
    assert report["failed_deliveries"] == {"waiting": 0, "in_flight": 0, "oldest_seen": None}


def test_falling_behind_a_failed_decision_and_waiting_deliveries_are_spelled_out() -> None:
    health = Health(
        newest_end=NOW - 1500,
        stored_at=NOW - 60,
        decision_at=NOW - 40,
        decision_ok=False,
        outcome="ProvisionedThroughputExceededException: slow down",
        completed_at=NOW - 700,
    )
    view = overview(health, Backlog(2, 0, NOW - 3 * 3600), ALARM)
    assert keeping_up_text(view) == [
        "flow logs: behind by 25m (newest record stored ended 2025-11-24 15:35:00Z); TOO FAR BEHIND: "
        "records older than 20m are skipped, decisions do not see this traffic",
        "last decision: 2025-11-24 15:59:20Z (40s ago), FAILED: ProvisionedThroughputExceededException: "
        "slow down",
        "  armed and no decision completed for 11m40s",
        "2 failed deliveries waiting, oldest 3h old: run floodgate replay",
    ]
    report = keeping_up_json(view)
    assert (report["behind"], report["decisions_overdue"]) == (True, True)
    assert report["last_decision"]["ok"] is False
    assert report["failed_deliveries"]["oldest_seen"] == "2025-11-24T13:00:00.000000Z"


def test_not_armed_no_decision_is_overdue_and_nothing_recorded_yet_is_said_plainly() -> None:
    view = overview(Health(completed_at=NOW - 86400), Backlog(1, 1, None))
    assert keeping_up_text(view) == [
        "flow logs: none stored yet",
        "last decision: none recorded",
        "1 failed delivery waiting (1 being replayed): run floodgate replay",
    ]
    assert keeping_up_json(view)["decisions_overdue"] is False


def test_a_stack_without_the_queue_output_says_the_backlog_is_unknown() -> None:
    assert keeping_up_text(overview(Health(), None))[-1] == (
        "failed deliveries: unknown (the stack has no failure queue output)"
    )


def test_stream_ranges_lost_to_trimming_are_spelled_out_and_absent_otherwise() -> None:
    lost = (
        "stream range shardId-000000000001 4960..4961 (2 records) lost: trimmed past the stream's retention"
    )
    view = overview(Health(ranges_lost=3, lost_at=NOW - 600, last_lost=lost), Backlog(0, 0, None))
    assert (
        keeping_up_text(view)[-1]
        == f"stream: 3 failed ranges LOST (trimmed before replay), the last 10m ago: {lost}"
    )
    assert keeping_up_json(view)["stream_ranges_lost"] == {
        "count": 3,
        "last_at": "2025-11-24T15:50:00.000000Z",
        "last": lost,
    }
    quiet = overview(Health(), Backlog(0, 0, None))
    assert not any(line.startswith("stream:") for line in keeping_up_text(quiet))
    assert keeping_up_json(quiet)["stream_ranges_lost"] == {"count": 0, "last_at": None, "last": None}
