"""benchmarks/bench_gpu.py --quick runs end to end on a CPU, so the one-call GPU check never rots."""

from __future__ import annotations

import re
import sys

import pytest
import yaml

from .conftest import REPO, TINY, TINY_MODEL, run_script


@pytest.mark.slow  # the script end to end: a few training steps per case
def test_bench_gpu_quick_prints_every_measurement(tiny_data, tmp_path):
    _, data = tiny_data
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "model": TINY_MODEL}))
    res = run_script(REPO / "benchmarks" / "bench_gpu.py", "--quick", "--config", cfg, "--data", data)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    flops = re.search(r"([\d.]+) GFLOP per training sample.*?([\d.]+) GFLOP per UNet evaluation", out)
    assert flops and float(flops.group(1)) > float(flops.group(2)) > 0, out
    for case in ("eager fp32", "bf16 autocast", "bf16 + channels_last", "bf16 + fused AdamW"):
        for source in ("loader", "resident"):
            line = re.search(rf"{re.escape(case)}\s+{source}\s+([\d.]+) samples/s", out)
            assert line and float(line.group(1)) > 0, (case, source, out)
    assert re.search(r"bf16 \+ torch\.compile\s+skipped", out), out
    euler = re.search(r"sampling euler .*MSE vs Euler-4 ([\d.e+-]+)", out)
    assert euler and float(euler.group(1)) == 0.0, out  # the reference against itself
    for method in ("heun", "midpoint"):
        line = re.search(
            rf"sampling {method}\s+2 steps \(\s*4 evaluations\):\s+([\d.]+) images/s, MSE vs Euler-4 ([\d.e+-]+)", out
        )
        assert line and float(line.group(1)) > 0 and 0 < float(line.group(2)) < 1, (method, out)
    assert re.search(r"embedding: \d+ galaxies/s", out), out


def test_largest_batch_stops_at_the_first_out_of_memory(monkeypatch):
    """The batch search (accelerator only, so --quick skips it) on a CPU with an out-of-memory
    error faked above 16 samples: it doubles from the start and returns the last size that fit."""
    import importlib.util

    import torch

    from .conftest import tiny_config

    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    tried = []

    def fake_step_fn(model, case, lr):
        def step(batch):
            n = batch["target"].shape[0]
            tried.append(n)
            if n > 16:
                raise torch.OutOfMemoryError("fake")

        return step

    monkeypatch.setattr(bench, "train_step_fn", fake_step_fn)
    cfg = tiny_config(model=TINY_MODEL)
    sample = {
        "target": torch.zeros(3, 4, 48, 48),
        "physics": torch.zeros(3, 1, 4, 48, 48),
        "physics_mask": torch.ones(3, 1, dtype=torch.bool),
    }
    assert bench.largest_batch(cfg, sample, 4, torch.device("cpu")) == 16
    assert tried == [4, 8, 16, 32]
    assert bench.repeated(sample, 7)["physics"].shape == (7, 1, 4, 48, 48)
