"""The opt-in training trace (whatsreal.train.trace) that the DDP tests read: off by default,
one file per rank when asked, and a weight digest that tells equal weights from different ones."""

from __future__ import annotations

import torch

from whatsreal.train.trace import TRACE_ENV, parameter_digest, trace_file


def test_no_trace_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(TRACE_ENV, raising=False)
    assert trace_file(0) is None
    monkeypatch.setenv(TRACE_ENV, str(tmp_path / "trace"))
    assert trace_file(1) == tmp_path / "trace" / "rank1.jsonl"
    assert (tmp_path / "trace").is_dir()


def test_parameter_digest_is_equal_exactly_for_equal_weights():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    b.load_state_dict(a.state_dict())
    assert parameter_digest(a) == parameter_digest(b)
    b[1].running_mean += 1.0  # buffers differ between DDP ranks by design: not weights
    assert parameter_digest(a) == parameter_digest(b)
    with torch.no_grad():
        b[0].weight[0, 0] += 1e-6
    assert parameter_digest(a) != parameter_digest(b)
