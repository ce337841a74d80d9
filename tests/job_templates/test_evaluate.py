"""The evaluate recipe: sliding-window perplexity, generation samples, FID / IS with a stand-in
feature extractor (no download), and the small-sample FID warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates import evaluate as recipe
from job_templates.common.image_metrics import MIN_STABLE_FID_SAMPLES, image_scores
from job_templates.config import JobError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval(), AutoTokenizer.from_pretrained(
        tiny_gpt2
    )


def _stream(n: int, seed: int = 0, vocab: int = 500) -> tuple[list[int], list[int]]:
    ids = torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    return ids, list(ids)


def _ppl(model, stream, window, stride, batch_size=4):
    return recipe.sliding_window_perplexity(model, stream, window=window, stride=stride,
                                            device=torch.device("cpu"), batch_size=batch_size)  # fmt: skip


@pytest.mark.parametrize("stride", [1, 7, 16, 32])
def test_windows_score_every_token_exactly_once(stride):
    spans = recipe.windows(100, 32, stride)
    scored = [t for _, end, n in spans for t in range(end - n, end)]
    assert scored == list(range(100))
    assert all(end - begin <= 32 and n <= end - begin for begin, end, n in spans)


def test_one_window_equals_the_full_forward_pass(lm):
    model, _ = lm
    stream = _stream(40)
    ids = torch.tensor([stream[0]])
    with torch.no_grad():
        full = model(input_ids=ids, labels=ids).loss.item()  # HF's own mean NLL, one pass
    for stride in (40, 64, 1000):  # stride >= length: a single window holds the whole text
        result = _ppl(model, stream, window=64, stride=stride)
        assert result["windows"] == 1 and result["tokens"] == 39
        assert result["loss"] == pytest.approx(full, rel=1e-5)


def test_disjoint_windows_equal_packed_block_evaluation(lm):
    from job_templates.common.evaluation import evaluate
    from job_templates.common.text import pack

    model, _ = lm
    stream = _stream(150, seed=1)
    blocks = pack([stream], 32, pad_id=0)
    expected = evaluate(model, blocks, torch.device("cpu"), batch_size=4)
    got = _ppl(model, stream, window=32, stride=32)
    assert got["tokens"] == expected["tokens"] == 150 - 5  # the first token of each window
    assert got["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)


def test_overlapping_windows_score_all_but_the_first_token_with_context(lm):
    model, _ = lm
    stream = _stream(150, seed=1)
    result = _ppl(model, stream, window=32, stride=8)
    assert result["tokens"] == 149 and result["stride"] == 8
    assert result["windows"] == len(recipe.windows(150, 32, 8))
    # A stride beyond the window would skip tokens: it is clamped to the window.
    assert _ppl(model, stream, window=32, stride=50)["stride"] == 32


# ---- image metrics -----------------------------------------------------------------------------


class _StandIn(torch.nn.Module):
    """A tiny fixed feature extractor: uint8 (N, 3, H, W) -> (N, 12) pooled colour features."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


@pytest.fixture(scope="module", params=["export", "torchscript"])
def extractor(request, tmp_path_factory) -> Path:
    """The stand-in saved the two ways a user can hand one over: torch.export and TorchScript."""
    folder = tmp_path_factory.mktemp("extractor")
    if request.param == "export":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(_StandIn().eval(), (_images(4, 0),),
                                      dynamic_shapes={"images": {0: batch}})  # fmt: skip
        torch.export.save(program, folder / "standin.pt2")
        return folder / "standin.pt2"
    with pytest.warns(DeprecationWarning):  # torch deprecates TorchScript; we still read it
        torch.jit.save(torch.jit.script(_StandIn()), str(folder / "standin.pt"))
    return folder / "standin.pt"


def _images(n: int, seed: int, brightness: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (
        (torch.randint(0, 200, (n, 3, 16, 16), generator=g) + brightness)
        .clamp(0, 255)
        .to(torch.uint8)
    )


def _frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    import numpy as np
    from scipy import linalg

    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_uses_the_given_extractor_and_warns_below_2048_samples(extractor):
    real, fake = _images(64, 0), _images(64, 1, brightness=40)
    result = image_scores(fake, real, extractor, batch_size=16)
    features = _StandIn()
    assert result["fid"] == pytest.approx(_frechet(features(real), features(fake)), rel=1e-3)
    assert result["feature_dim"] == 12 and result["generated_images"] == 64
    assert result["inception_score_mean"] >= 1.0
    assert len(result["warnings"]) == 1 and "unstable" in result["warnings"][0]
    assert str(MIN_STABLE_FID_SAMPLES) in result["warnings"][0]
    same = image_scores(real, _images(64, 0), extractor, batch_size=16)
    assert abs(same["fid"]) < 1e-3 < result["fid"]


def test_a_state_dict_without_torch_fidelity_or_a_missing_file_is_a_clear_error(tmp_path):
    weights = tmp_path / "inception.pth"
    torch.save({"w": torch.zeros(2)}, weights)
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is None:
        with pytest.raises(JobError, match="evaluate.feature_extractor: .*torch-fidelity"):
            image_scores(_images(4, 0), _images(4, 1), weights)
    with pytest.raises(JobError, match="evaluate.feature_extractor: .* does not exist"):
        image_scores(_images(4, 0), _images(4, 1), tmp_path / "nope.pt")


# ---- the recipe end to end ---------------------------------------------------------------------


def _run(spec: dict, run: Path) -> tuple[int, dict]:
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}"])  # fmt: skip
    path = run / "out" / "metrics.json"
    return code, json.loads(path.read_text()) if path.exists() else {}


def _small_eval(corpus_path: Path, tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(corpus_path.read_text().splitlines(keepends=True)[:n]))
    return path


def test_language_model_perplexity_and_samples(make_spec, corpus_path, tmp_path):
    spec = make_spec(task="evaluate", name="tiny-eval",
                     data={"eval": str(_small_eval(corpus_path, tmp_path))},
                     evaluate={"stride": 16, "generate_samples": 2, "max_new_tokens": 5})  # fmt: skip
    code, metrics = _run(spec, tmp_path / "run")
    assert code == 0
    assert metrics["perplexity"]["stride"] == 16 and metrics["perplexity"]["window"] == 64
    assert metrics["perplexity"]["perplexity"] > 1
    assert len(metrics["samples"]) == 2
    assert all(s["prompt"] and isinstance(s["completion"], str) for s in metrics["samples"])
    assert json.loads((tmp_path / "run" / "out" / "samples.json").read_text())["samples"]


def test_image_metrics_without_loading_a_model(make_spec, extractor, tmp_path):
    import numpy as np

    np.save(tmp_path / "fake.npy", _images(32, 1).permute(0, 2, 3, 1).numpy())  # NHWC
    torch.save(_images(32, 0), tmp_path / "real.pt")
    spec = make_spec(task="evaluate", name="tiny-fid",
                     model={"name_or_path": str(tmp_path / "no-model-needed")},
                     evaluate={"perplexity": False, "generate_samples": 0, "image_metrics": True,
                               "feature_extractor": str(extractor),
                               "generated_images": str(tmp_path / "fake.npy"),
                               "real_images": str(tmp_path / "real.pt")})  # fmt: skip
    code, metrics = _run(spec, tmp_path / "run")
    assert code == 0
    assert metrics["images"]["fid"] > 0 and metrics["images"]["real_images"] == 32
    assert any("unstable" in w for w in metrics["warnings"])


def test_image_metrics_without_an_extractor_is_a_clear_error(make_spec, tmp_path, capsys):
    spec = make_spec(task="evaluate", name="tiny-fid",
                     evaluate={"perplexity": False, "generate_samples": 0, "image_metrics": True,
                               "generated_images": str(tmp_path), "feature_extractor": "x.pt2"})  # fmt: skip
    # `validate` refuses a spec without the extractor (tests/test_spec.py); the recipe still
    # guards a spec.json written some other way.
    run = tmp_path / "run"
    run.mkdir()
    doc = json.loads(load_spec(spec).to_json())
    doc["evaluate"]["feature_extractor"] = None
    (run / "spec.json").write_text(json.dumps(doc))
    code = entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}"])  # fmt: skip
    assert code == entrypoint.EXIT_INPUT_ERROR
    assert "evaluate.feature_extractor:" in capsys.readouterr().err
