"""The from-scratch transformer (task ``pretrain-scratch``): masks, tied weights, data, learning."""

from __future__ import annotations

import json

import pytest
import torch

from genai_cloud.loading import load_spec
from job_templates import scratch
from job_templates.config import Config, JobError
from job_templates.contract import Contract

TINY = {"d_model": 16, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "dim_feedforward": 32, "dropout": 0.0}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """Matrices this small gain nothing from intra-op threads, and on a busy 2-core machine two
    spinning threads made the same training ~10x slower in wall time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(**sections) -> Config:
    """What the entrypoint hands a recipe: the validated spec, defaults filled, as a Config."""
    raw = {"name": "scratch-test", "task": "pretrain-scratch", **sections}
    return Config.wrap(load_spec(raw).model_dump(mode="json"))


def contract(tmp_path, rank: int = 0) -> Contract:
    return Contract(platform="local", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "checkpoints",
                    output_dir=tmp_path / "output", rank=rank)  # fmt: skip


def tiny_model(vocab_size: int = 12, max_len: int = 12) -> scratch.TransformerModel:
    torch.manual_seed(0)
    return scratch.TransformerModel(vocab_size, max_len=max_len, **TINY).eval()


# ---- model -----------------------------------------------------------------------------------


def test_output_layer_is_tied_to_the_embedding():
    model = tiny_model()
    assert model.generator.weight is model.embedding.weight
    # One matrix, counted once: the vocab x d_model block is not duplicated among parameters.
    names = [name for name, _ in model.named_parameters()]
    assert "embedding.weight" in names and scratch.TIED_KEY not in names


def test_embeddings_are_scaled_and_positions_are_a_sinusoidal_buffer():
    model = tiny_model()
    ids = torch.tensor([[5, 6, 7]])
    expected = model.embedding(ids) * 16**0.5 + model.positions.pe[:, :3]
    assert torch.allclose(model.embed(ids), expected)
    assert "positions.pe" in dict(model.named_buffers())
    assert "positions.pe" not in model.state_dict()  # a formula, rebuilt rather than saved
    assert torch.allclose(model.positions.pe[0, 0, 0::2], torch.zeros(8))  # sin(0)
    assert torch.allclose(model.positions.pe[0, 0, 1::2], torch.ones(8))  # cos(0)


def test_decoder_cannot_see_future_target_tokens():
    model = tiny_model()
    src = torch.tensor([[5, 6, 7, 8]])
    tgt = torch.tensor([[scratch.BOS, 9, 10, 11]])
    changed = tgt.clone()
    changed[0, 3] = 4
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-5)  # positions before the change
    assert not torch.allclose(a[0, 3], b[0, 3], atol=1e-5)  # the changed position itself


def test_padding_changes_nothing_for_real_tokens():
    model = tiny_model()
    src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[scratch.BOS, 9, 10]])
    padded_src = torch.tensor([[5, 6, 7, scratch.PAD, scratch.PAD]])
    padded_tgt = torch.tensor([[scratch.BOS, 9, 10, scratch.PAD]])
    with torch.no_grad():
        plain = model(src, tgt)
        padded = model(padded_src, padded_tgt)
    assert torch.allclose(plain, padded[:, :3], atol=1e-5)
    # And the unmasked model does see them: the masks are what makes the difference.
    with torch.no_grad():
        memory = model.transformer.encoder(model.embed(padded_src))
        leaked = model.generator(model.transformer.decoder(model.embed(tgt), memory))
    assert not torch.allclose(leaked[:, 1:], plain[:, 1:], atol=1e-4)


def test_greedy_decode_stops_at_eos_and_drops_specials():
    model = tiny_model(vocab_size=6)
    with torch.no_grad():
        model.generator.bias.fill_(-100.0)
        model.generator.bias[scratch.EOS] = 100.0  # always predicts <eos> first
    assert model.greedy_decode(torch.tensor([[4, 5], [5, 4]])) == [[], []]


# ---- data ------------------------------------------------------------------------------------


def test_make_batch_shifts_targets_and_pads():
    src, tgt_in, labels = scratch.make_batch([([4, 5, 6], [6, 5, 4]), ([7], [7])], 10, "cpu")
    B, E, P = scratch.BOS, scratch.EOS, scratch.PAD
    assert src.tolist() == [[4, 5, 6], [7, P, P]]
    assert tgt_in.tolist() == [[B, 6, 5, 4], [B, 7, E, P]]
    assert labels.tolist() == [[6, 5, 4, E], [7, E, P, P]]


def test_toy_reverse_pairs_are_deterministic_distinct_and_held_out(tmp_path):
    spec = config(scratch={"toy_task": "reverse", "toy_vocab": 6, "toy_examples": 200})
    train, held_out, vocab = scratch.load_pairs(spec, contract(tmp_path), 10)
    again, _, _ = scratch.load_pairs(spec, contract(tmp_path), 10)
    assert train == again
    assert len(train) == 180 and len(held_out) == 20
    assert all(t == s[::-1] and 1 <= len(s) <= 8 for s, t in train + held_out)
    assert not {tuple(s) for s, _ in train} & {tuple(s) for s, _ in held_out}
    assert len(vocab.tokens) == 4 + 6 and vocab.decode([4, 9]) == "0 5"


def test_instruction_records_get_a_char_vocabulary(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": w, "response": w.upper()})
                              for w in ["ab", "ba", "abc", "cab", "bca"]))  # fmt: skip
    spec = config(data={"train": str(data), "format": "instruction", "eval_fraction": 0.2,
                        "max_seq_len": 8},
                  scratch=TINY, training={"max_steps": 2, "batch_size": 2})  # fmt: skip
    metrics = scratch.run(spec, contract(tmp_path))
    vocab = json.loads((tmp_path / "model" / "vocab.json").read_text())
    assert vocab["level"] == "char"
    assert vocab["tokens"] == list(scratch.SPECIALS) + ["A", "B", "C", "a", "b", "c"]
    assert metrics["train_pairs"] == 4 and metrics["eval"]["examples"] == 1


def test_records_in_another_format_are_refused_naming_the_field(tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text('{"text": "hello"}\n')
    spec = config(data={"train": str(data), "format": "jsonl"}, scratch=TINY)
    with pytest.raises(JobError, match="data.format.*'instruction'"):
        scratch.run(spec, contract(tmp_path))


# ---- the recipe ------------------------------------------------------------------------------


def test_learns_to_reverse_sequences(tmp_path):
    spec = config(
        scratch={"d_model": 64, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
                 "dim_feedforward": 128, "dropout": 0.0, "toy_task": "reverse",
                 "toy_vocab": 10, "toy_examples": 2000},
        training={"max_steps": 200, "batch_size": 64, "lr": 3e-3, "warmup_steps": 50,
                  "log_every": 50, "seed": 0},
    )  # fmt: skip
    run_contract = contract(tmp_path)
    metrics = scratch.run(spec, run_contract)

    assert metrics["eval"]["examples"] == 200
    assert metrics["eval"]["sequence_accuracy"] > 0.9, metrics["eval"]
    assert metrics["eval"]["token_accuracy"] >= metrics["eval"]["sequence_accuracy"]
    losses = [loss for _, loss in metrics["train_loss"]]
    assert losses[-1] < losses[0] / 10
    assert json.loads((tmp_path / "output" / "metrics.json").read_text()) == metrics

    # The saved model is the trained one: reloaded, it reverses unseen sequences.
    model, vocab = scratch.load_model(tmp_path / "model")
    assert model.generator.weight is model.embedding.weight
    config_json = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config_json["d_model"] == 64 and config_json["tie_word_embeddings"] is True
    src = [4 + d for d in (3, 1, 4, 1, 5, 9)]
    assert vocab.decode(model.greedy_decode(torch.tensor([src]))[0]) == "9 5 1 4 1 3"


def test_only_rank_zero_writes(tmp_path):
    spec = config(scratch={**TINY, "toy_task": "copy", "toy_examples": 40},
                  training={"max_steps": 2, "batch_size": 8})  # fmt: skip
    metrics = scratch.run(spec, contract(tmp_path, rank=1))
    assert metrics["steps"] == 2 and "eval" not in metrics
    assert not (tmp_path / "model").exists() and not (tmp_path / "output").exists()


def test_resumes_from_the_newest_checkpoint(tmp_path):
    sections = {"scratch": {**TINY, "toy_task": "copy", "toy_examples": 40}}
    first = config(**sections, training={"max_steps": 4, "batch_size": 8, "checkpoint_every": 2,
                                         "keep_checkpoints": 1})  # fmt: skip
    scratch.run(first, contract(tmp_path))
    saved = sorted(p.name for p in (tmp_path / "checkpoints" / "scratch").iterdir())
    assert saved == ["step-00000004.pt"]  # keep_checkpoints=1 pruned step 2

    longer = config(**sections, training={"max_steps": 6, "batch_size": 8})
    metrics = scratch.run(longer, contract(tmp_path))
    assert metrics["resumed_from_step"] == 4
    assert [step for step, _ in metrics["train_loss"]] == [6]  # only steps 5-6 ran (log at end)
