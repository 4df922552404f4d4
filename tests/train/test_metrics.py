"""train/metrics.py: the metrics log, reading it back, cutting it at a step; peak FLOPs."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.errors import InputError
from train.metrics import MetricsLogger, peak_flops_for_name, read_metrics, truncate_metrics


def test_log_read_and_truncate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLogger(path) as logger:
        for step in range(1, 5):
            logger.log({"step": step, "loss": torch.tensor(1.0 / step)})
        logger.log({"note": "no step"})
    records = list(read_metrics(path))
    assert [r.get("step") for r in records] == [1, 2, 3, 4, None]
    assert records[0]["loss"] == 1.0 and "time" in records[0]
    with open(path, "a") as fh:
        fh.write("\n[1, 2]\n" + '{"step": 5, "lo')
    with pytest.raises(InputError, match="metrics.jsonl:7: not a JSON object"):
        list(read_metrics(path))
    before = path.read_text().splitlines()
    truncate_metrics(path, 2)
    # Steps after 2 go, and so do lines that are not records; a line without a step counts as 0.
    assert path.read_text().splitlines() == [before[0], before[1], before[4]]
    truncate_metrics(tmp_path / "missing.jsonl", 2)  # nothing to cut
    assert not (tmp_path / "missing.jsonl").exists()
    assert json.loads(path.read_text().splitlines()[-1]) == records[-1]


def test_disabled_logger_writes_nothing(tmp_path):
    with MetricsLogger(tmp_path / "m.jsonl", enabled=False) as logger:
        logger.log({"step": 1})
    assert not (tmp_path / "m.jsonl").exists()


def test_peak_flops_by_device_name():
    assert peak_flops_for_name("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_for_name("NVIDIA L40S") == 362e12 and peak_flops_for_name("NVIDIA L4") == 121e12
    assert peak_flops_for_name("NVIDIA A10G") is None and peak_flops_for_name("Some GPU") is None
