"""The job side of issue 21: an offline hub id fails at once, quiet model loading, a GPU fallback
that says so as a warning, and JSON errors that read as English."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from job_templates.config import JobError

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny-gpt2"


def test_a_hub_id_while_offline_fails_within_seconds_naming_the_field(monkeypatch):
    from job_templates.common import locations

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def unreachable(address, timeout=None, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.monotonic()
    with pytest.raises(JobError, match="hub id, and the hub .* is unreachable") as info:
        locations.resolve_location("some-org/some-model-not-cached")
    assert info.value.where == "model.name_or_path" and time.monotonic() - started < 5


def test_a_folder_that_looks_like_a_hub_id_is_read_from_disk(monkeypatch, tmp_path):
    from job_templates.common import locations

    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the hub"))
    assert locations.resolve_location("org/model") == "org/model"


def test_loading_a_gpt2_model_logs_no_loss_type_warning(capfd):
    from job_templates.common.model import load_model_and_tokenizer
    from job_templates.config import Config

    spec = Config(name_or_path=str(TINY), head="causal-lm", dtype="auto", init="pretrained")
    load_model_and_tokenizer(spec)
    assert "loss_type" not in "".join(capfd.readouterr())


def test_a_gpu_spec_on_a_cpu_machine_warns(caplog, monkeypatch):
    import torch

    from job_templates.common import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="genai"):
        _, choice = device.setup("A100")
    assert choice.kind == "cpu"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warned and "A100 requested but no CUDA device is visible" in warned[0].getMessage()


def test_an_unterminated_string_reads_without_a_doubled_word(tmp_path):
    from genai_cloud.spec import DataSpec
    from job_templates.common.records import read_records
    from job_templates.config import Config

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "broken\n')
    with pytest.raises(JobError) as info:
        read_records(bad, Config.wrap(DataSpec(train=str(bad)).model_dump()))
    message = str(info.value)
    assert "starting at column" in message and "at at" not in message
