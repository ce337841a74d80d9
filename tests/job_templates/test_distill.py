"""The distill recipe: the loss against hand computations, the alternate-layer student, the
vocabulary check, an end-to-end run, and bit-exact resume (SIGTERM and kill -9)."""

from __future__ import annotations

import copy
import json
import math
import random
import re
import signal
import subprocess
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates.common.distill_loss import (
    alternate_layer_student,
    distillation_loss,
    kl_divergence,
    pick_layers,
)
from job_templates.config import JobError

torch = pytest.importorskip("torch")
STEP_LINE = re.compile(r"INFO step (\d+)/\d+")


def _distill_spec(make_spec, teacher, **sections) -> dict:
    base = {"task": "distill", "name": "tiny-distill", "distill": {"teacher": str(teacher)},
            "training": {"max_steps": 12, "eval_batches": 2, "log_every": 1}}  # fmt: skip
    return make_spec(**{**base, **sections})


def _run_in_process(spec: dict, run: Path, *extra: str) -> int:
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(load_spec(spec).to_json())
    return entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}",
                            *extra])  # fmt: skip


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


# ---- the loss ------------------------------------------------------------------------------------


def _hand_kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(xs: list[float], t: float) -> list[float]:
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def test_forward_and_reverse_kl_match_hand_computation():
    student, teacher, t = [1.0, 0.0, -1.0], [0.2, 2.0, -0.5], 2.0
    p_s, p_t = _softmax(student, t), _softmax(teacher, t)
    s, te = torch.tensor([[student]]), torch.tensor([[teacher]])
    forward = kl_divergence(s, te, t, "forward").item()
    reverse = kl_divergence(s, te, t, "reverse").item()
    assert forward == pytest.approx(_hand_kl(p_t, p_s), rel=1e-6)  # KL(teacher || student)
    assert reverse == pytest.approx(_hand_kl(p_s, p_t), rel=1e-6)  # KL(student || teacher)
    assert forward != pytest.approx(reverse, rel=1e-3)  # the direction matters here


def test_loss_mixes_alpha_t2_kl_and_ce_on_target_positions_only():
    torch.manual_seed(0)
    s, te = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[0, :3] = -100  # e.g. an instruction prompt: nothing to learn there
    parts = distillation_loss(s, te, labels, alpha=0.3, temperature=2.0, direction="reverse")
    # Hand computation: position t predicts labels[t + 1]; only targets != -100 count.
    kls, ces = [], []
    for b in range(2):
        for pos in range(4):
            if labels[b, pos + 1] == -100:
                continue
            kls.append(
                _hand_kl(_softmax(s[b, pos].tolist(), 2.0), _softmax(te[b, pos].tolist(), 2.0))
            )
            ces.append(-math.log(_softmax(s[b, pos].tolist(), 1.0)[labels[b, pos + 1]]))
    kl, ce = sum(kls) / len(kls), sum(ces) / len(ces)
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(0.3 * 4 * kl + 0.7 * ce, rel=1e-5)
    # Logits at positions whose target is ignored do not move the loss.
    s2 = s.clone()
    s2[0, :2] += 100.0
    again = distillation_loss(s2, te, labels, alpha=0.3, temperature=2.0, direction="reverse")
    assert again["loss"].item() == pytest.approx(parts["loss"].item(), rel=1e-6)


def test_kl_is_zero_when_student_equals_teacher_and_extra_vocab_rows_are_ignored():
    logits = torch.randn(1, 4, 6)
    padded = torch.cat([logits, torch.randn(1, 4, 2) * 50], dim=-1)  # rows beyond the tokenizer
    other = torch.cat([logits, torch.randn(1, 4, 2) * 50], dim=-1)
    parts = distillation_loss(padded, other, torch.zeros(1, 4, dtype=torch.long), alpha=1.0,
                              temperature=1.0, direction="forward", vocab_size=6)  # fmt: skip
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_compiled_loss_fn_matches_eager(tmp_path):
    """The CUDA path compiles the teacher and the loss; on the CPU the numbers must not move."""
    from job_templates.common.distill_loss import alternate_layer_student, make_loss_fn
    from job_templates.config import Config

    teacher = _gpt2().eval().requires_grad_(False)
    distill = Config(alpha=0.7, temperature=2.0, kl_direction="reverse")
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[1, -3:] = -100
    batch = {"input_ids": ids, "labels": labels}  # no mask: what the fast path passes
    losses, grads = [], []
    for compiled in (False, True):
        student, _ = alternate_layer_student(teacher, 2)
        student.eval()  # no dropout: compiled dropout draws other masks than eager
        compile = torch.compile if compiled else None
        loss = make_loss_fn(teacher, distill, 50, compile=compile)(student, batch)
        loss.backward()
        losses.append(loss.item())
        grads.append(student.transformer.wte.weight.grad)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(grads[1], grads[0], rtol=1e-4, atol=1e-7)


# ---- the student ---------------------------------------------------------------------------------


def test_pick_layers_takes_every_other_layer_by_default():
    assert pick_layers(12, None) == [0, 2, 4, 6, 8, 10]  # DistilGPT2's 6 of 12
    assert pick_layers(12, 4) == [0, 3, 6, 9]
    with pytest.raises(JobError, match="distill.student_layers"):
        pick_layers(4, 4)


def test_pick_layers_explains_a_one_layer_teacher():
    for asked in (None, 1):
        with pytest.raises(JobError, match="only one layer.*student_init: config") as err:
            pick_layers(1, asked)
        assert err.value.where == "distill.student_init"
    with pytest.raises(JobError, match="a student of 2 layers .* choose 1$"):
        pick_layers(2, 2)
    assert pick_layers(2, None) == [0]


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=4, n_head=2)
    )


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=4, num_attention_heads=2,
                                        num_key_value_heads=1, max_position_embeddings=32))  # fmt: skip


@pytest.mark.parametrize("build, stack", [(_gpt2, "transformer.h"), (_llama, "model.layers")])
def test_alternate_layer_student_is_the_teacher_minus_odd_layers(build, stack):
    teacher = build().eval()
    student, chosen = alternate_layer_student(teacher)
    assert chosen == [0, 2]
    assert student.config.num_hidden_layers == 2
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )
    # The same computation as the teacher with its layers 1 and 3 removed.
    cut = copy.deepcopy(teacher)
    parent, name = stack.rsplit(".", 1)
    layers = getattr(cut.get_submodule(parent), name)
    setattr(cut.get_submodule(parent), name, torch.nn.ModuleList([layers[0], layers[2]]))
    cut.config.num_hidden_layers = 2
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        expected = cut(input_ids=ids, use_cache=False).logits
        got = student.eval()(input_ids=ids, use_cache=False).logits
    assert torch.equal(expected, got)


# ---- the recipe ----------------------------------------------------------------------------------


def test_vocabulary_mismatch_names_both_fields(make_spec, tiny_gpt2, tmp_path, capsys):
    import shutil

    from transformers import AutoTokenizer

    other = tmp_path / "other-student"
    shutil.copytree(tiny_gpt2, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<not-in-teacher>"])
    tokenizer.save_pretrained(other)
    spec = _distill_spec(make_spec, tiny_gpt2, model={"name_or_path": str(other)},
                         distill={"teacher": str(tiny_gpt2), "student_init": "config"})  # fmt: skip
    code = _run_in_process(spec, tmp_path / "run")
    err = capsys.readouterr().err
    assert code == entrypoint.EXIT_INPUT_ERROR
    assert "distill.teacher" in err and "model.name_or_path" in err and "<not-in-teacher>" in err
    assert not (tmp_path / "run" / "out" / "metrics.json").exists()


def test_missing_teacher_names_distill_teacher(make_spec, tiny_gpt2, tmp_path, capsys):
    spec = _distill_spec(make_spec, tmp_path / "no-such-teacher")
    assert _run_in_process(spec, tmp_path / "run") == entrypoint.EXIT_INPUT_ERROR
    assert "distill.teacher:" in capsys.readouterr().err


def test_student_is_smaller_and_learns(make_spec, tiny_gpt2, tmp_path):
    from transformers import AutoModelForCausalLM

    assert _run_in_process(_distill_spec(make_spec, tiny_gpt2), tmp_path) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["student_layers_from_teacher"] == [0]
    assert metrics["student_params"] < metrics["teacher_params"]
    assert metrics["student_weight_bytes"] < metrics["teacher_weight_bytes"]
    assert metrics["student_size_on_disk_bytes"] >= metrics["student_weight_bytes"]
    assert metrics["eval_after"]["perplexity"] < metrics["eval_before"]["perplexity"] / 2
    assert metrics["student_perplexity"] == metrics["eval_after"]["perplexity"]
    assert metrics["teacher_perplexity"] > 0 and metrics["inference_speedup"] > 0
    assert len(metrics["train_losses"]) == 12
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert student.config.n_layer == 1


# ---- resume (issue 7: "Same for distill") --------------------------------------------------------


def _resume_spec(make_spec, tiny_gpt2) -> dict:
    return _distill_spec(make_spec, tiny_gpt2, env={"OMP_NUM_THREADS": "1"},
                         training={"max_steps": 8, "eval_batches": 2, "log_every": 1,
                                   "checkpoint_every": 4, "keep_checkpoints": 2})  # fmt: skip


def test_sigterm_then_rerun_gives_bit_identical_student(make_spec, tiny_gpt2, tmp_path):
    spec = _resume_spec(make_spec, tiny_gpt2)
    assert _run_in_process(spec, tmp_path / "reference") == 0
    stopped = _run_in_process(spec, tmp_path / "resumed", "--preempt-at=5")
    assert stopped == entrypoint.EXIT_PREEMPTED
    assert not (tmp_path / "resumed" / "out" / "metrics.json").exists()
    assert _run_in_process(spec, tmp_path / "resumed") == 0
    metrics = json.loads((tmp_path / "resumed" / "out" / "metrics.json").read_text())
    reference = json.loads((tmp_path / "reference" / "out" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 5
    assert metrics["train_losses"] == reference["train_losses"]
    expected, got = (
        _weights(tmp_path / "reference" / "model"),
        _weights(tmp_path / "resumed" / "model"),
    )
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


class _Watch:
    def __init__(self, at: int, action):
        self.at, self.action, self.fired, self.text = at, action, None, []

    def write(self, text: str) -> None:
        self.text.append(text)
        match = STEP_LINE.search(text)
        if match and self.action and self.fired is None and int(match.group(1)) >= self.at:
            self.fired = int(match.group(1))
            self.action()

    def flush(self) -> None:
        pass


@pytest.mark.slow
def test_kill_9_then_rerun_gives_bit_identical_student(make_spec, tiny_gpt2, tmp_path, monkeypatch):
    from genai_cloud.providers.local import run_local

    started = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    spec = _resume_spec(make_spec, tiny_gpt2)
    reference = run_local(spec, run_dir=tmp_path / "reference", stream=_Watch(10**9, None))
    assert reference.returncode == 0
    kill_at = random.Random().randint(2, 7)
    watch = _Watch(kill_at, lambda: started[-1].kill())
    killed = run_local(spec, run_dir=tmp_path / "run", stream=watch)
    # The local runner reports a job killed by a signal as 128 + its number, like a shell.
    assert killed.returncode == 128 + signal.SIGKILL, f"kill at step >= {kill_at}"
    last_logged = max(int(m) for m in STEP_LINE.findall("".join(watch.text)))
    resumed = run_local(spec, run_dir=tmp_path / "run", stream=_Watch(10**9, None))
    assert resumed.returncode == 0
    start = resumed.metrics["resumed_from_step"] or 0  # killed before the first checkpoint: 0
    assert last_logged - start <= 4  # at most one checkpoint interval redone
    assert resumed.metrics["train_losses"] == reference.metrics["train_losses"]
    expected, got = _weights(reference.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
