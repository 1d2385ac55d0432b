"""The result spool of a compute service: what is on disk survives until removed, oldest first."""

from __future__ import annotations

import os

from alchemiscale_local.compute.spool import ResultSpool


def test_put_pending_remove_round_trip(tmp_path):
    spool = ResultSpool(tmp_path / "spool" / "cpu-0")
    assert spool.pending() == []
    a = spool.put("Task-a-o-c-p", "svc-1", "ProtocolDAGResult-1", True, b"\x28\xb5\x2f\xfdfirst")
    b = spool.put("Task-b-o-c-p", "svc-1", "ProtocolDAGResult-2", False, b"second")
    os.utime(a.meta_path, (1, 1))  # a is older
    # a new ResultSpool on the same dir (a restarted service) sees both, oldest first
    again = ResultSpool(tmp_path / "spool" / "cpu-0").pending()
    assert [(e.task, e.service_id, e.pdr_key, e.ok) for e in again] == [
        ("Task-a-o-c-p", "svc-1", "ProtocolDAGResult-1", True),
        ("Task-b-o-c-p", "svc-1", "ProtocolDAGResult-2", False),
    ]
    assert again[0].data() == b"\x28\xb5\x2f\xfdfirst"
    spool.remove(a)
    assert [e.task for e in spool.pending()] == ["Task-b-o-c-p"]
    spool.remove(b)
    assert spool.pending() == []
    assert not (tmp_path / "spool" / "cpu-0").exists(), "an emptied spool leaves no folder behind"
    # the next result makes the folder again
    spool.put("Task-c-o-c-p", "svc-1", "ProtocolDAGResult-3", True, b"third")
    assert [e.task for e in spool.pending()] == ["Task-c-o-c-p"]


def test_half_written_or_damaged_entries_are_ignored(tmp_path):
    spool = ResultSpool(tmp_path)
    entry = spool.put("Task-a-o-c-p", "svc-1", "ProtocolDAGResult-1", True, b"x")
    (tmp_path / "orphan.zst").write_bytes(b"no meta: never counted")
    (tmp_path / "broken.json").write_text("{not json")
    assert [e.task for e in spool.pending()] == ["Task-a-o-c-p"]
    entry.path.unlink()  # result file gone: the entry does not count
    assert spool.pending() == []
