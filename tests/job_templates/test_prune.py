"""The prune recipe: exact sparsity, valid 2:4 groups (GPT-2's transposed Conv1D included), Wanda's
activation-aware scores, permanent masks, recovery that keeps them, and the end-to-end report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates.common import pruning
from job_templates.config import Config

torch = pytest.importorskip("torch")


def _gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    )


def _prune_spec(method: str, pattern: str = "unstructured", sparsity: float = 0.5) -> Config:
    return Config(method=method, pattern=pattern, sparsity=sparsity, calibration_batches=2,
                  recovery_steps=0)  # fmt: skip


def _batches(n: int = 2) -> list[dict]:
    torch.manual_seed(3)
    return [{"input_ids": torch.randint(0, 64, (2, 12)),
             "attention_mask": torch.ones(2, 12, dtype=torch.long)} for _ in range(n)]  # fmt: skip


def _norms(model):
    return pruning.input_norms(model, pruning.prunable(model), _batches(), torch.device("cpu"))


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77])
def test_global_magnitude_reaches_the_exact_sparsity_and_masks_become_permanent(sparsity):
    model = _gpt2()
    modules = pruning.prune_model(model, _prune_spec("magnitude", sparsity=sparsity))
    total = sum(m.weight.numel() for _, m in modules)
    pruning.make_permanent(modules)
    report = pruning.sparsity_report(model, modules)
    assert report["pruned_weights"] == round(sparsity * total)  # global: one count over all layers
    assert report["prunable_weights"] == total
    assert not any(n.endswith(("_orig", "_mask")) for n in model.state_dict())
    assert not any(m._forward_pre_hooks for _, m in modules)  # nothing re-applies a mask any more
    assert model.get_output_embeddings() not in [m for _, m in modules]  # the tied LM head stays


def test_global_magnitude_prunes_the_smallest_weights():
    model = _gpt2()
    before = torch.cat([m.weight.detach().abs().flatten() for _, m in pruning.prunable(model)])
    modules = pruning.prune_model(model, _prune_spec("magnitude", sparsity=0.5))
    pruning.make_permanent(modules)
    kept = torch.cat([m.weight.detach().abs().flatten() for _, m in modules])
    threshold = before.sort().values[len(before) // 2 - 1]
    assert kept[kept != 0].min() >= threshold


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_2_4_keeps_two_of_every_four_inputs_in_the_right_orientation(method):
    model = _gpt2()
    modules = pruning.prune_model(model, _prune_spec(method, "2:4"), _norms(model))
    pruning.make_permanent(modules)
    for name, module in modules:
        assert pruning.valid_2_4(module), name
        assert (module.weight == 0).float().mean().item() == 0.5, name
    # GPT-2's Conv1D stores (in, out): groups of 4 run down dim 0. Along the other dim the same
    # weights break the pattern, which shows the transpose was honoured.
    c_fc = model.transformer.h[0].mlp.c_fc.weight.detach()  # (16 in, 64 out)
    along_outputs = (c_fc.reshape(16, 16, 4) != 0).sum(-1)
    assert (along_outputs > 2).any()


def test_2_4_at_another_sparsity_is_a_clear_error():
    from job_templates.config import JobError

    with pytest.raises(JobError, match="prune.sparsity: 2:4 keeps 2 of every 4 weights"):
        pruning.prune_model(_gpt2(), _prune_spec("magnitude", "2:4", sparsity=0.6))


def test_input_norms_are_the_l2_norm_of_each_input_channel_over_real_tokens():
    model = _gpt2().eval()
    batch = _batches(1)[0]
    batch["attention_mask"][1, 8:] = 0  # padding must not count
    first = model.transformer.h[0].attn.c_attn
    seen = []
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    norms = pruning.input_norms(model, [("c_attn", first)], [batch], torch.device("cpu"))
    handle.remove()
    x = seen[0][batch["attention_mask"].bool()]  # (real tokens, 16)
    assert torch.allclose(norms["c_attn"], x.pow(2).sum(0).sqrt(), rtol=1e-5)


def _norms_on_rank(rank: int, port: int, out: str) -> None:
    """One torchrun-like rank: its half of the calibration batches, norms summed across ranks."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)  # fmt: skip
    try:
        model = _gpt2().eval()
        mine = _batches(4)[rank::2]
        norms = pruning.input_norms(model, pruning.prunable(model), mine, torch.device("cpu"),
                                    world_size=2)  # fmt: skip
        pruning.make_permanent(pruning.prune_model(model, _prune_spec("wanda"), norms))
        torch.save({"norms": norms, "weights": model.state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_wanda_norms_and_masks_agree_across_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_norms_on_rank, args=(port, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    model = _gpt2().eval()
    alone = pruning.input_norms(model, pruning.prunable(model), _batches(4), torch.device("cpu"))
    assert ranks[0]["norms"].keys() == alone.keys()
    for name in alone:
        assert torch.equal(ranks[0]["norms"][name], ranks[1]["norms"][name])
        assert torch.allclose(ranks[0]["norms"][name], alone[name], rtol=1e-5)
    pruned = [ranks[r]["weights"] for r in (0, 1)]
    assert all(torch.equal(pruned[0][k], pruned[1][k]) for k in pruned[0])  # the same masks


def test_wanda_keeps_small_weights_on_loud_channels():
    weight = torch.tensor([[0.1, 1.0, 1.0, 0.9], [0.2, 0.5, 0.6, 0.7]])
    norms = torch.tensor([100.0, 1.0, 1.0, 1.0])
    magnitude = pruning.keep_mask(weight.abs(), 0.5, "unstructured", per_row=True)
    wanda = pruning.keep_mask(weight.abs() * norms, 0.5, "unstructured", per_row=True)
    assert magnitude[:, 0].tolist() == [0.0, 0.0]  # smallest weights
    assert wanda[:, 0].tolist() == [1.0, 1.0]  # ... but on a channel 100x louder than the rest
    assert wanda.sum(1).tolist() == [2.0, 2.0]  # per output row: exactly half kept


# ---- the recipe end to end ---------------------------------------------------------------------


def _run(spec: dict, run: Path) -> tuple[int, dict]:
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}"])  # fmt: skip
    path = run / "out" / "metrics.json"
    return code, json.loads(path.read_text()) if path.exists() else {}


def test_wanda_with_recovery_reports_perplexity_and_saves_permanent_zeros(make_spec, tmp_path):
    from safetensors.torch import load_file

    spec = make_spec(task="prune", name="tiny-prune",
                     prune={"method": "wanda", "sparsity": 0.5, "recovery_steps": 6,
                            "calibration_batches": 2},
                     training={"eval_batches": 2, "log_every": 3})  # fmt: skip
    code, metrics = _run(spec, tmp_path)
    assert code == 0
    assert metrics["sparsity_pruned_layers"] == 0.5
    assert 0 < metrics["sparsity_all_parameters"] < 0.5  # embeddings and norms are not pruned
    assert set(metrics["per_layer"]) == {f"transformer.h.{i}.{n}" for i in range(2)
                                         for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}  # fmt: skip
    for key in ("perplexity_before", "perplexity_pruned", "perplexity_after"):
        assert metrics[key] > 1
    assert metrics["perplexity_after"] < metrics["perplexity_pruned"]  # recovery helped
    assert metrics["recovery_steps"] == 6 and "dense tensors" in metrics["speed_note"]
    weights = load_file(tmp_path / "model" / "model.safetensors")
    assert not any(k.endswith(("_orig", "_mask")) for k in weights)
    zeros = sum(int((weights[f"{name}.weight"] == 0).sum()) for name in metrics["per_layer"])
    assert zeros == metrics["pruned_weights"]  # recovery did not revive a pruned weight
