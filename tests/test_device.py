"""SAYIT_DEVICE: auto | cpu | cuda, and the compute type that goes with it.

This machine has no GPU, so the CUDA device count is injected; the last test checks what the
real CTranslate2 reports here (0) and that the node says so in /api/diagnose.
"""

from __future__ import annotations

import pytest

from sayit_node.config import SettingsError, load_settings
from sayit_node.engines import EngineError, choose_device, cuda_device_count


@pytest.mark.parametrize("requested,compute,gpus,expected", [
    ("auto", "auto", 0, ("cpu", "int8")),
    ("auto", "auto", 1, ("cuda", "float16")),
    ("auto", "auto", 2, ("cuda", "float16")),
    ("cpu", "auto", 1, ("cpu", "int8")),  # a GPU is there, the user asked for the CPU
    ("cuda", "auto", 1, ("cuda", "float16")),
    ("auto", "int8_float16", 1, ("cuda", "int8_float16")),  # an explicit compute type wins
    ("auto", "float32", 0, ("cpu", "float32")),
    ("AUTO", "", 0, ("cpu", "int8")),
])
def test_device_and_compute_type(requested, compute, gpus, expected):
    assert choose_device(requested, compute, cuda_devices=gpus) == expected


def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(EngineError, match="no CUDA GPU"):
        choose_device("cuda", "auto", cuda_devices=0)


def test_unknown_device_is_refused():
    with pytest.raises(EngineError, match="unknown device"):
        choose_device("tpu", "auto", cuda_devices=0)


def test_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("SAYIT_CONFIG_FILE", str(tmp_path / "none.toml"))
    assert load_settings().device == "auto" and load_settings().compute_type == "auto"
    monkeypatch.setenv("SAYIT_DEVICE", "CUDA")
    assert load_settings().device == "cuda"
    monkeypatch.setenv("SAYIT_DEVICE", "gpu")
    with pytest.raises(SettingsError, match="SAYIT_DEVICE"):
        load_settings()


def test_this_machine_has_no_gpu_and_the_node_reports_cpu(node_factory):
    assert cuda_device_count() == 0  # CTranslate2's own answer on this machine
    node = node_factory(env={"SAYIT_DEVICE": "auto"})
    with node.client() as client:
        diag = client.get("/api/diagnose").json()
        assert (diag["device"], diag["deviceSetting"], diag["cudaDevices"], diag["computeType"]) == \
            ("cpu", "auto", 0, "int8")
        me = [n for n in client.get("/api/nodes").json()["nodes"] if n["self"]][0]
        assert me["device"] == "cpu"
