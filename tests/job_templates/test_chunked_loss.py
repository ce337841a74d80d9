"""The chunked LM-head losses equal the full-logits ones (fp32, CPU) in value and gradient."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from job_templates.common import chunked_loss
from job_templates.common.distill_loss import distillation_loss
from job_templates.common.text import IGNORE
from job_templates.config import Config, JobError

TINY = Path(__file__).resolve().parents[2] / "examples" / "tiny-gpt2"
# fp32 on CPU; the chunked sums run in another order than one big reduction.
ATOL, RTOL = 1e-6, 1e-5


def _problem(batch=3, seq=11, hidden=16, vocab=37, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, seq, hidden, generator=g, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=g, requires_grad=True)
    b = torch.randn(vocab, generator=g, requires_grad=True) if bias else None
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    labels[0, :4] = IGNORE  # an instruction prompt: not learnt
    labels[2, -3:] = IGNORE  # padding
    return h, w, b, labels


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t is not None])


@pytest.mark.parametrize("chunk", [1, 5, 7, 64])
@pytest.mark.parametrize("bias", [True, False])
def test_cross_entropy_and_its_gradients_equal_the_full_logits_loss(chunk, bias):
    h, w, b, labels = _problem(bias=bias)
    logits = F.linear(h, w, b)
    full = F.cross_entropy(logits[:, :-1].reshape(-1, w.shape[0]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE)  # fmt: skip
    chunked = chunked_loss.linear_cross_entropy(h, w, b, labels, chunk)
    torch.testing.assert_close(chunked, full, atol=ATOL, rtol=RTOL)
    for ours, reference in zip(_grads(chunked, h, w, b), _grads(full, h, w, b)):
        torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)


def test_token_weights_match_the_weighted_loss_formula():
    h, w, b, labels = _problem()
    weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(3)) + 0.5
    logits = F.linear(h, w, b)[:, :-1]
    per_token = F.cross_entropy(logits.reshape(-1, w.shape[0]), labels[:, 1:].reshape(-1),
                                ignore_index=IGNORE, reduction="none")  # fmt: skip
    targets = (labels[:, 1:].reshape(-1) != IGNORE).float()
    full = (per_token * weights[:, 1:].reshape(-1) * targets).sum() / targets.sum()
    chunked = chunked_loss.linear_cross_entropy(h, w, b, labels, 4, token_weights=weights)
    torch.testing.assert_close(chunked, full, atol=ATOL, rtol=RTOL)
    for ours, reference in zip(_grads(chunked, h, w), _grads(full, h, w)):
        torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_still_do():
    h, w, _, labels = _problem()
    w.requires_grad_(False)
    loss = chunked_loss.linear_cross_entropy(h, w, None, labels, 6)
    (grad_h,) = torch.autograd.grad(loss, [h])
    full = F.cross_entropy(F.linear(h, w)[:, :-1].reshape(-1, w.shape[0]),
                           labels[:, 1:].reshape(-1), ignore_index=IGNORE)  # fmt: skip
    torch.testing.assert_close(grad_h, torch.autograd.grad(full, [h])[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("padded_rows", [0, 5])
def test_distillation_loss_parts_and_gradients_equal_the_full_logits_loss(direction, padded_rows):
    h, w, b, labels = _problem(vocab=37 + padded_rows)
    g = torch.Generator().manual_seed(7)
    t_h = torch.randn(3, 11, 24, generator=g)
    t_head = torch.nn.Linear(24, 37, bias=True)
    head = torch.nn.Linear(16, 37 + padded_rows)
    head.weight, head.bias = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(b.detach().clone())
    options = {"alpha": 0.3, "temperature": 2.5, "direction": direction, "vocab_size": 37}
    full = distillation_loss(head(h), t_head(t_h), labels, **options)
    chunked = chunked_loss.linear_distillation(h, head, t_h, t_head, labels, 4, **options)
    for part in ("loss", "kl", "ce"):
        torch.testing.assert_close(chunked[part], full[part], atol=ATOL, rtol=RTOL)
    params = (h, head.weight, head.bias)
    for ours, reference in zip(_grads(chunked["loss"], *params), _grads(full["loss"], *params)):
        torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)


def test_the_loss_scales_with_the_incoming_gradient():
    # The Trainer divides each micro-batch's loss by the accumulation count before backward.
    h, w, b, labels = _problem()
    (grad_half,) = torch.autograd.grad(chunked_loss.linear_cross_entropy(h, w, b, labels, 5) / 2, [w])
    (grad_one,) = torch.autograd.grad(chunked_loss.linear_cross_entropy(h, w, b, labels, 5), [w])
    torch.testing.assert_close(grad_half * 2, grad_one)


def test_auto_chunks_only_large_logits_and_sizes_chunks_to_the_hidden_states():
    assert chunked_loss.resolve_chunk("off", batch_size=16, seq_len=1024, vocab=50304, hidden=768) is None
    assert chunked_loss.resolve_chunk("auto", batch_size=8, seq_len=128, vocab=1739, hidden=64) is None
    # GPT-2 124M at 16 x 1024: 3.3 GB of fp32 logits -> chunks whose logits fit in the hidden
    # states' size (16384 tokens x 768 / 50304 rows = 250 -> 128, a power of two below it).
    chunk = chunked_loss.resolve_chunk("auto", batch_size=16, seq_len=1024, vocab=50304, hidden=768)
    assert chunk == 128 and chunk * 50304 <= 16 * 1024 * 768
    assert chunked_loss.resolve_chunk(300, batch_size=1, seq_len=8, vocab=10, hidden=4) == 300


# ---- on a real transformers model -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm():
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(TINY)
    model.config.attn_pdrop = model.config.resid_pdrop = model.config.embd_pdrop = 0.0
    return transformers.AutoModelForCausalLM.from_pretrained(TINY, config=model.config).eval()


def _batch(vocab: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2, 24), generator=g)
    labels = ids.clone()
    labels[1, :5] = IGNORE
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_an_enabled_model_gives_its_own_loss_and_gradients(tiny_lm):
    plain, chunked = tiny_lm, copy.deepcopy(tiny_lm)
    assert chunked_loss.enable(chunked, 7)
    batch = _batch(plain.config.vocab_size)
    out_plain, out_chunked = plain(**batch), chunked(**batch)
    assert out_chunked.logits is None  # never materialised
    torch.testing.assert_close(out_chunked.loss, out_plain.loss, atol=ATOL, rtol=RTOL)
    out_plain.loss.backward()
    out_chunked.loss.backward()
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)
    # Without labels (generation, classification-style scoring) the model's own forward runs.
    torch.testing.assert_close(chunked(input_ids=batch["input_ids"]).logits,
                               plain(input_ids=batch["input_ids"]).logits)  # fmt: skip
    plain.zero_grad()


def test_lora_wrapped_models_chunk_too(tiny_lm):
    from job_templates.common.lora import apply_lora

    lora = Config(r=4, alpha=8, dropout=0.0, target_modules=[], merge_on_save=True)
    plain = apply_lora(copy.deepcopy(tiny_lm), lora, "causal-lm")
    chunked = copy.deepcopy(plain)
    assert chunked_loss.enable(chunked, 5)
    batch = _batch(tiny_lm.config.vocab_size, seed=4)
    torch.testing.assert_close(chunked(**batch).loss, plain(**batch).loss, atol=ATOL, rtol=RTOL)


def test_an_explicit_chunk_on_an_unsupported_head_names_the_field(tiny_lm):
    other = copy.deepcopy(tiny_lm)
    other.config.model_type = "gemma2"  # soft-capped logits: chunking would change the loss
    with pytest.raises(JobError, match="training.loss_chunk"):
        chunked_loss.enable(other, 64, required=True)
    assert chunked_loss.enable(other, 64) is False  # auto: falls back to the plain loss


def test_distillation_through_the_enabled_student_equals_the_full_logits_loss(tiny_lm):
    from job_templates.common.distill_loss import alternate_layer_student, make_loss_fn

    teacher = copy.deepcopy(tiny_lm).requires_grad_(False)
    student, _ = alternate_layer_student(teacher)
    student.eval()
    options = Config(alpha=0.5, temperature=2.0, kl_direction="reverse")
    batch = _batch(tiny_lm.config.vocab_size, seed=9)
    full = make_loss_fn(teacher, options, tiny_lm.config.vocab_size)(student, batch)
    chunked_student = copy.deepcopy(student)
    assert chunked_loss.enable(chunked_student, 6, distill=options, teacher=teacher,
                               vocab_size=tiny_lm.config.vocab_size)  # fmt: skip
    chunked = make_loss_fn(teacher, options, tiny_lm.config.vocab_size, chunked=True)(chunked_student, batch)
    torch.testing.assert_close(chunked, full, atol=ATOL, rtol=RTOL)


# ---- through the recipes ----------------------------------------------------------------------


def _run(spec: dict, run: Path, *extra: str) -> dict:
    from genai_cloud.loading import load_spec
    from job_templates import entrypoint

    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}",
                            *extra])  # fmt: skip
    assert code in (0, entrypoint.EXIT_PREEMPTED)
    metrics = run / "out" / "metrics.json"
    return {"code": code, **(json.loads(metrics.read_text()) if metrics.exists() else {})}


def _chunked_and_plain(make_spec, tmp_path, **sections):
    def spec(chunk):
        training = {"loss_chunk": chunk, "max_steps": 6, "log_every": 1, "eval_batches": 2,
                    **sections.pop("training", {})}  # fmt: skip
        return make_spec(**{**sections, "training": training})

    return _run(spec(37), tmp_path / "chunked"), _run(spec("off"), tmp_path / "plain")


@pytest.mark.parametrize("data", [
    {},  # packed text
    {"train": str(Path(__file__).resolve().parents[2] / "examples" / "data" / "tickets.jsonl"),
     "format": "instruction", "prompt_field": "text", "response_field": "label", "packing": False},
], ids=["packed", "instruction-masked"])  # fmt: skip
def test_finetune_with_a_chunked_loss_follows_the_plain_loss_curve(make_spec, tmp_path, data):
    chunked, plain = _chunked_and_plain(make_spec, tmp_path, data=data)
    assert chunked["loss_chunk"] == 37 and plain["loss_chunk"] is None
    assert chunked["train_losses"] == pytest.approx(plain["train_losses"], rel=1e-4)
    assert chunked["eval_after"]["loss"] == pytest.approx(plain["eval_after"]["loss"], rel=1e-4)


def test_distill_with_chunked_logits_follows_the_plain_loss_curve(make_spec, tiny_gpt2, tmp_path):
    sections = {"task": "distill", "name": "tiny-distill", "distill": {"teacher": str(tiny_gpt2)}}
    chunked, plain = _chunked_and_plain(make_spec, tmp_path, **sections)
    assert chunked["loss_chunk"] == 37
    assert chunked["train_losses"] == pytest.approx(plain["train_losses"], rel=1e-4)


def test_resume_with_a_chunked_loss_is_bit_exact(make_spec, tmp_path):
    from safetensors.torch import load_file

    spec = make_spec(training={"loss_chunk": 64, "max_steps": 8, "checkpoint_every": 4,
                               "log_every": 1, "eval_batches": 1})  # fmt: skip
    reference = _run(spec, tmp_path / "reference")
    assert _run(spec, tmp_path / "resumed", "--preempt-at=5")["code"] == 143
    resumed = _run(spec, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 5
    assert resumed["train_losses"] == reference["train_losses"]
    a, b = load_file(tmp_path / "reference" / "model" / "model.safetensors"), \
        load_file(tmp_path / "resumed" / "model" / "model.safetensors")  # fmt: skip
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_chunked_loss_compiles_and_equals_eager(tiny_lm):
    model = copy.deepcopy(tiny_lm)
    chunked_loss.enable(model, 16)
    batch = _batch(tiny_lm.config.vocab_size, seed=5)
    eager = model(**batch).loss
    compiled = torch.compile(model, dynamic=False)(**batch).loss
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    compiled.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
