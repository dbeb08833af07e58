"""`genview bench`: runs the real engine on a random preset and reports rate, busy fraction, MFU, CPU cost."""

from __future__ import annotations

import json

import pytest
import torch

from genview.cli.main import main
from genview.pipeline.benchmark import device_peak


def test_bench_reports_throughput_busy_fraction_mfu_and_bottleneck(capsys):
    code = main(["bench", "icgan", "--preset", "tiny", "--device", "cpu", "--sources", "8", "--k", "2",
                 "--batch-size", "8", "--io-threads", "2", "--peak-tflops", "1.5", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["views"] == 16 and result["views_per_second"] > 0
    assert 0 < result["device_busy"] <= 1
    assert result["flops_per_view"] > 0 and result["peak_tflops"] == 1.5
    # MFU is the achieved FLOP rate over the peak, from the same numbers.
    assert result["mfu"] == pytest.approx(result["views_per_second"] * result["flops_per_view"] / 1.5e12)
    assert result["cpu_ms_per_view"] > 0 and result["bottleneck"] in ("device", "read_decode", "collect", "encode_write")
    assert {"device", "encode", "write", "read_decode"} <= set(result["stage_cpu_ms_per_view"])


def test_bench_table_and_peaks(capsys):
    assert main(["bench", "icgan", "--preset", "tiny", "--device", "cpu", "--sources", "4", "--k", "1",
                 "--batch-size", "4", "--io-threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "views/s" in out and "MFU                 n/a" in out and "bottleneck stage" in out
    assert device_peak(torch.device("cpu")) == ("cpu", None)
    assert main(["bench", "no-such-model"]) == 2  # one line naming the known models, no traceback
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
