"""``genai-cloud report`` (genai_cloud/report.py): the page of a real fine-tune run (with its audit
gate and a fairness result) and of two runs compared, loaded in headless Chromium.

Chromium comes from Debian's packages (``apt-get install -y chromium``); ``--dump-dom`` prints the
DOM after the page's script ran and ``--enable-logging=stderr`` prints every console message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from genai_cloud.report import load_run, render, write_report
from genai_cloud.runs import mark_latest
from genai_cloud.loading import load_spec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install "
                                    "-y chromium)")  # fmt: skip


def _finetune_run(make_spec, run_dir: Path, name: str, lr: float) -> Path:
    """A finished run folder as `genai-cloud run` lays it out (code/spec.json, model, output)."""
    from job_templates import entrypoint
    from job_templates.fairness import evaluate_groups, write_outputs

    spec = load_spec(make_spec(name=name, training={"max_steps": 8, "log_every": 2, "lr": lr,
                                                    "eval_every": 4, "eval_batches": 1},
                               audit={"gate": True}))  # fmt: skip
    (run_dir / "code").mkdir(parents=True)
    (run_dir / "code" / "spec.json").write_text(spec.to_json())
    code = entrypoint.main([f"--spec={run_dir / 'code' / 'spec.json'}",
                            f"--model-dir={run_dir / 'model'}",
                            f"--checkpoint-dir={run_dir / 'checkpoints'}",
                            f"--output-dir={run_dir / 'output'}"])  # fmt: skip
    assert code == 0
    # A classifier fairness result, computed by the fairness recipe's own functions.
    truth = [1, 0, 1, 1, 0, 0, 1, 0] * 6
    predicted = [1, 0, 1, 0, 0, 1, 1, 0] * 6
    groups = ["a", "a", "a", "a", "b", "b", "b", "b"] * 6
    axis = evaluate_groups(truth, predicted, groups, bootstrap=40)
    write_outputs({"mode": "classifier", "axes": {"group": axis}, "metrics": axis["metrics"]},
                  run_dir / "output" / "fairness")  # fmt: skip
    return run_dir


@pytest.fixture(scope="module")
def runs_root(make_spec, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for name, lr in (("tiny-finetune-aaaa000001", 3e-3), ("tiny-finetune-bbbb000002", 1e-3)):
        _finetune_run(make_spec, root / name, "tiny-finetune", lr)
    mark_latest("tiny-finetune", root / "tiny-finetune-bbbb000002", root)
    return root


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text of <title> / <h1> / <h2>."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        if data.strip():
            self.texts.append(data.strip())

    def having(self, tag: str, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.elements
                if t == tag and (cls is None or cls in (a.get("class") or "").split())]  # fmt: skip


def _chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console messages) of ``page`` in headless Chromium."""
    profile = tmp_path / f"profile-{page.stem}"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def test_a_run_is_found_by_folder_job_name_or_spec_name(runs_root):
    by_folder = load_run(str(runs_root / "tiny-finetune-aaaa000001"))
    by_job = load_run("tiny-finetune-aaaa000001", runs_root)
    by_spec = load_run("tiny-finetune", runs_root)  # the latest: bbbb
    assert by_folder.folder == by_job.folder
    assert by_spec.name == "tiny-finetune-bbbb000002"
    assert by_spec.metrics["steps"] == 8 and by_spec.spec["training"]["lr"] == 1e-3
    assert by_spec.audit["records"] > 0 and by_spec.fairness["mode"] == "classifier"
    assert by_spec.card.startswith("---")


def test_one_run_page_has_its_curves_charts_card_and_spec(runs_root):
    run = load_run("tiny-finetune", runs_root)
    page = _Elements(render([run]))
    charts = {a["aria-label"]: a for a in page.having("svg", "chart")}
    assert {"tiny-finetune-bbbb000002: loss", "tiny-finetune-bbbb000002: training throughput",
            "Fairness, group: disparities (95% bootstrap CI)",
            "Data audit: quality-rule failures (rules that fired)"} <= set(charts)  # fmt: skip
    [train] = [a for a in page.having("path", "series") if a["data-series"] == "train loss"]
    assert train["d"].count("L") == 8 - 1  # one vertex per step
    evals = [a for a in page.having("circle", "point") if a["data-series"] == "eval loss"]
    assert len(evals) == 3  # before, at step 4 (during), after
    ci = page.having("path", "ci")
    assert {a["data-label"] for a in ci} == {"dem. parity diff.", "dem. parity ratio",
                                             "eq. odds diff."}
    assert page.having("details", "card") and page.having("details", "spec")
    assert not [t for t in page.having("table") if t.get("id") == "comparison"]  # one run


@needs_chromium
def test_the_report_loads_in_chromium_without_console_errors(runs_root, tmp_path, run_cli):
    code, out, err = run_cli(["report", "tiny-finetune-aaaa000001", "tiny-finetune",
                              "--runs-dir", str(runs_root), "-o", str(tmp_path / "two.html")])  # fmt: skip
    assert code == 0, err
    assert f"Wrote {tmp_path / 'two.html'}" in out
    dom, console = _chromium(tmp_path / "two.html", tmp_path)
    assert console == []
    page = _Elements(dom)
    [table] = [t for t in page.having("table") if t.get("id") == "comparison"]
    assert table.get("data-sortable") == "ready"  # the page's script ran
    rows = [t for t in page.texts if t.startswith("tiny-finetune-")]
    assert {"tiny-finetune-aaaa000001", "tiny-finetune-bbbb000002"} <= set(rows)
    labels = [a["aria-label"] for a in page.having("svg", "chart")]
    assert "Training loss, all runs" in labels
    assert labels.count("Fairness, group: disparities (95% bootstrap CI)") == 2
    overlay = [a for a in page.having("path", "series")
               if a["data-series"] in ("tiny-finetune-aaaa000001", "tiny-finetune-bbbb000002")]
    assert len(overlay) == 2
    metrics = json.loads((runs_root / "tiny-finetune-aaaa000001/output/metrics.json").read_text())
    assert f"{metrics['tokens_per_s']:.4g}" in page.texts


@needs_chromium
def test_the_console_check_sees_a_page_error(tmp_path):
    """The control for the check above: a page that throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined();</script></body></html>")
    _, console = _chromium(bad, tmp_path)
    assert any("Uncaught ReferenceError: notDefined is not defined" in line for line in console)


def test_one_run_report_defaults_to_its_folder(runs_root):
    path = write_report(["tiny-finetune"], runs_root=runs_root)
    assert path == runs_root / "tiny-finetune-bbbb000002" / "report.html"
    assert "<svg" in path.read_text() and "http" not in path.read_text().replace(
        "http://www.w3.org/2000/svg", "")  # self-contained: no external resource  # fmt: skip


def test_an_unknown_run_names_the_runs_there(runs_root, run_cli):
    code, _, err = run_cli(["report", "nope", "--runs-dir", str(runs_root)])
    assert code == 2 and "no run 'nope'" in err and "tiny-finetune" in err
