"""GPU pinning plans. No GPU exists here: device lists are given explicitly, and the
`nvidia-smi` used for detection is a FAKE script on PATH that prints what a 2-GPU host prints."""

from __future__ import annotations

import os
import stat

import pytest
from alchemiscale_local.launchers.compute_pool import ServiceSpec, detect_gpus, plan_services


def test_auto_uses_every_detected_gpu_one_service_each():
    specs = plan_services("auto", 1, None, visible=None, detected=["0", "1"])
    assert [(s.name, s.gpu) for s in specs] == [("gpu0-0", "0"), ("gpu1-0", "1")]


def test_per_gpu_and_cpu_services():
    specs = plan_services("auto", 2, 1, visible=None, detected=["0"])
    assert [(s.name, s.gpu) for s in specs] == [("gpu0-0", "0"), ("gpu0-1", "0"), ("cpu-0", None)]


def test_no_gpu_means_one_cpu_service_unless_told_otherwise():
    assert [(s.name, s.gpu) for s in plan_services("auto", 1, None, detected=[])] == [("cpu-0", None)]
    assert plan_services("auto", 1, 0, detected=[]) == []
    assert plan_services("none", 1, None, detected=["0", "1"]) == [ServiceSpec("cpu-0", None)]


def test_explicit_devices_map_into_the_users_visible_list():
    # The user already restricted the process to physical GPUs 2 and 3: "0" means their first.
    specs = plan_services("1", 1, 0, visible="2,3", detected=["0", "1", "2", "3"])
    assert [s.gpu for s in specs] == ["3"]
    assert [s.gpu for s in plan_services("auto", 1, 0, visible="2,3")] == ["2", "3"]


def test_device_outside_visible_list_is_a_clear_error():
    with pytest.raises(ValueError, match="outside CUDA_VISIBLE_DEVICES"):
        plan_services("2", 1, 0, visible="2,3")
    with pytest.raises(ValueError, match="device numbers"):
        plan_services("gpu0", 1, 0, detected=[])


def test_service_env_pins_exactly_one_device():
    assert ServiceSpec("gpu3-0", "3").env() == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "3",
    }
    # CPU services see no GPU at all (an empty list hides every device).
    assert ServiceSpec("cpu-0", None).env()["CUDA_VISIBLE_DEVICES"] == ""


def fake_nvidia_smi(tmp_path, monkeypatch, status: int = 0) -> None:
    """FAKE nvidia-smi: answers `-L` with a two-GPU listing (and ``status``); other arguments fail."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = "-L" ] || exit 2\n'
        "echo 'GPU 0: NVIDIA H100 (UUID: GPU-aaa)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-bbb)'\n"
        f"exit {status}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_detect_gpus_reads_fake_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch)
    assert detect_gpus() == ["0", "1"]


def test_detect_gpus_ignores_a_failing_nvidia_smi(tmp_path, monkeypatch):
    # a driver error: nvidia-smi exits non-zero, whatever it printed is not trusted
    fake_nvidia_smi(tmp_path, monkeypatch, status=9)
    assert detect_gpus() == []


def test_detect_gpus_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []
