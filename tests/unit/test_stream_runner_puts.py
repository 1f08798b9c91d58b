"""The emulated logs destination puts deliveries into the stream within Kinesis's PutRecords limits: at most
500 records and 5 MiB (data and partition keys) per call, in order, none left out."""

from __future__ import annotations

from emulator.stream_runner import put_records_calls

MIB = 1024 * 1024


def _entry(n: int, size: int) -> dict[str, object]:
    return {"Data": bytes(size - 4), "PartitionKey": f"{n:04d}"}  # the key's 4 bytes count too


def test_calls_stay_within_500_records_and_5_mib_and_keep_the_order() -> None:
    entries = [_entry(n, 130_000) for n in range(100)] + [_entry(100 + n, 10) for n in range(1200)]
    calls = list(put_records_calls(entries))
    # 130 kB deliveries: 40 fit in 5 MiB (5,242,880 / 130,000 = 40.3); then small ones, 500 at most
    assert [len(call) for call in calls] == [40, 40, 20 + 480, 500, 220]
    assert all(sum(len(e["Data"]) + 4 for e in call) <= 5 * MIB for call in calls)
    assert [e["PartitionKey"] for call in calls for e in call] == [e["PartitionKey"] for e in entries]


def test_a_record_as_large_as_one_call_goes_alone() -> None:
    entries = [_entry(0, 10), _entry(1, 5 * MIB), _entry(2, 10)]
    assert [len(call) for call in put_records_calls(entries)] == [1, 1, 1]
    assert list(put_records_calls([])) == []
