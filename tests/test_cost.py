"""Cost before launch: estimates against hand-computed catalog figures, the budget as a hard
runtime cap in each provider's render, budget refusal, and the cheapest placement."""

from __future__ import annotations

import pytest

from genai_cloud import cost
from genai_cloud.cost import BudgetError, capped_runtime, cheapest, estimate
from genai_cloud.errors import GenaiCloudError, ProviderError
from genai_cloud.loading import load_spec
from genai_cloud.plan import Plan, make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.vertex import VertexProvider
from genai_cloud.regions import launch_region

ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"

# Catalog rows the hand computations below use (USD per instance-hour, on-demand / spot):
# sagemaker ml.g5.xlarge (A10G)          us-east-1 1.408 / 0.422   eu-west-1 1.563 / 0.469
# sagemaker ml.g4dn.xlarge (T4)          us-east-1 0.736 / 0.221   eu-west-1 0.817 / 0.245
# vertex    n1-standard-4+1xT4           us-central1 0.621 / 0.2173
# azureml   Standard_NC4as_T4_v3         eastus 0.526 / 0.1052
# vertex    ct5lp-hightpu-4t (v5e, 4 chips) us-central1 5.52 / 2.208
# sagemaker ml.p5.48xlarge (8 x H100)    us-east-1 113.07


def spec(**sections):
    """A toy-task spec that renders on SageMaker (aws.bucket) and Azure ML (no output.uri)."""
    base = {
        "name": "price-check",
        "task": "pretrain-scratch",
        "scratch": {"toy_task": "copy"},
        "training": {"max_steps": 10},
        "compute": {"accelerator": "T4"},
        "aws": {"role_arn": ROLE, "bucket": "genai-bucket"},
    }
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return load_spec(base)


def rows(result):
    return [(q.provider, q.region) for q in result.quotes]


@pytest.fixture(autouse=True)
def _no_aws_region_env(monkeypatch):
    # SageMaker launches where boto3 would; keep the default region the catalog's.
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


# ---- estimates --------------------------------------------------------------------------------


def test_t4_for_three_hours_on_every_provider_cheapest_first():
    result = estimate(spec(compute={"max_runtime": "3h"}))
    assert rows(result) == [("azureml", "eastus"), ("vertex", "us-central1"),
                            ("sagemaker", "us-east-1"), ("sagemaker", "us-west-2"),
                            ("sagemaker", "eu-west-1")]  # fmt: skip
    by_place = {(q.provider, q.region): q for q in result.quotes}
    assert by_place["azureml", "eastus"].on_demand_usd == pytest.approx(0.526 * 3)
    assert by_place["azureml", "eastus"].spot_usd == pytest.approx(0.1052 * 3)
    assert by_place["vertex", "us-central1"].on_demand_usd == pytest.approx(0.621 * 3)
    assert by_place["sagemaker", "us-east-1"].on_demand_usd == pytest.approx(0.736 * 3)
    assert by_place["sagemaker", "eu-west-1"].spot_usd == pytest.approx(0.245 * 3)
    assert result.seconds == 3 * 3600 and result.skipped == {}


def test_spot_specs_rank_by_the_spot_price():
    result = estimate(spec(compute={"max_runtime": "3h", "spot": True},
                           training={"checkpoint_every": 5}))  # fmt: skip
    # spot: azure 0.1052 < vertex 0.2173 < sagemaker 0.221 (on-demand order is the same here,
    # so check the figures the ranking used)
    assert [q.provider for q in result.quotes][:3] == ["azureml", "vertex", "sagemaker"]
    assert [round(q.usd, 4) for q in result.quotes[:3]] == [0.3156, 0.6519, 0.663]
    assert all(q.spot for q in result.quotes)


def test_nodes_multiply_and_a_pinned_region_is_the_only_row():
    result = estimate(spec(compute={"accelerator": "A10G", "nodes": 2, "max_runtime": "2h"},
                           aws={"region": "eu-west-1"}), ["sagemaker"])  # fmt: skip
    (q,) = result.quotes
    assert (q.region, q.instance.type, q.machines) == ("eu-west-1", "ml.g5.xlarge", 2)
    assert q.on_demand_usd == pytest.approx(1.563 * 2 * 2)
    assert q.spot_usd == pytest.approx(0.469 * 2 * 2)


def test_tokens_and_throughput_price_the_expected_run_and_tpu_rules_out_two_providers():
    tpu = spec(compute={"accelerator": "tpu-v5e", "count": 4})
    result = estimate(tpu, tokens=1_000_000_000, throughput=50_000)
    (q,) = result.quotes
    assert q.provider == "vertex" and q.seconds == 20_000
    assert q.on_demand_usd == pytest.approx(5.52 * 20_000 / 3600)
    assert q.spot_usd == pytest.approx(2.208 * 20_000 / 3600)
    assert set(result.skipped) == {"sagemaker", "azureml"}
    assert all("tpu is not supported" in reason for reason in result.skipped.values())
    assert "1,000,000,000 tokens at 50,000 tokens/s" in result.basis


def test_a_multi_host_tpu_slice_bills_every_host():
    tpu = spec(compute={"accelerator": "tpu-v5e", "count": 4, "max_runtime": "1h"},
               gcp={"tpu_topology": "4x4"})  # fmt: skip
    (q,) = estimate(tpu, ["vertex"]).quotes
    assert q.machines == 4  # 16 chips / 4 chips per ct5lp-hightpu-4t host
    assert q.on_demand_usd == pytest.approx(5.52 * 4)


def test_a_run_longer_than_max_runtime_is_priced_to_the_cap_and_says_so():
    (q,) = estimate(spec(compute={"max_runtime": "1h"}), ["azureml"], tokens=36_000_000,
                    throughput=1000).quotes  # fmt: skip
    assert q.seconds == 3600 and "max_runtime" in q.note
    assert q.on_demand_usd == pytest.approx(0.526)


def test_tokens_without_throughput_is_a_user_error():
    with pytest.raises(GenaiCloudError, match="--tokens and --throughput"):
        estimate(spec(), tokens=1000)


def test_estimate_cli_prints_the_table_and_the_reasons(tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text("name: tpu-job\ntask: pretrain-scratch\nscratch: {toy_task: copy}\n"
                    "training: {max_steps: 5}\ncompute: {accelerator: tpu-v5e, count: 4}\n")  # fmt: skip
    code, out, _ = run_cli(["estimate", str(path), "--tokens", "1000000000", "--throughput",
                            "50000"])  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PROVIDER"))
    assert "ON-DEMAND" in lines[header] and "SPOT" in lines[header]
    assert lines[header + 1].split()[:3] == ["vertex", "us-central1", "ct5lp-hightpu-4t"]
    assert "$30.67" in lines[header + 1] and "$12.27" in lines[header + 1]
    assert "sagemaker cannot run this spec: compute.accelerator: tpu is not supported" in out
    assert "Prices: vertex catalog of" in out


# ---- budget: worst case, refusal and the hard runtime cap ----------------------------------


def sagemaker_cap(job) -> int:
    return capped_runtime(Plan(spec=job, provider="sagemaker"))


def test_no_budget_keeps_max_runtime():
    assert sagemaker_cap(spec(compute={"max_runtime": "5h"})) == 5 * 3600


def test_budget_lowers_the_default_runtime_in_every_provider_render():
    toy = spec(budget={"max_usd": 5})
    # int(5 USD * 3600 / hourly): sagemaker 0.736, azureml 0.526
    assert sagemaker_cap(toy) == 24456
    request = get_provider("sagemaker").render(make_plan(toy, "sagemaker"))
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 24456}
    job = get_provider("azureml").render(make_plan(toy, "azureml"))
    assert job["limits"] == {"timeout": 34220}
    on_vertex = spec(budget={"max_usd": 5}, output={"uri": "gs://genai-out/runs"})
    job = get_provider("vertex").render(make_plan(on_vertex, "vertex"))
    assert job["job_spec"]["scheduling"]["timeout"] == "28985s"  # 5 * 3600 / 0.621


def test_spot_budget_uses_the_spot_price_and_max_wait_follows_the_cap():
    toy = spec(compute={"accelerator": "A10G", "spot": True}, training={"checkpoint_every": 5},
               budget={"max_usd": 10})  # fmt: skip
    assert sagemaker_cap(toy) == 85308  # 10 * 3600 / 0.422 < 86,400 default
    stopping = get_provider("sagemaker").render(make_plan(toy, "sagemaker"))["StoppingCondition"]
    # Waiting for spot capacity is not billed: MaxWait may exceed the billed cap.
    assert stopping == {"MaxRuntimeInSeconds": 85308, "MaxWaitTimeInSeconds": 2 * 85308}


def test_nodes_halve_the_cap():
    two = spec(compute={"nodes": 2, "accelerator": "A10G"}, budget={"max_usd": 10})
    assert sagemaker_cap(two) == 12784  # 10 * 3600 / (1.408 * 2)


def test_an_explicit_max_runtime_over_budget_is_refused_with_the_fix():
    toy = spec(compute={"accelerator": "A10G", "max_runtime": "10h"}, budget={"max_usd": 10})
    with pytest.raises(BudgetError) as info:
        sagemaker_cap(toy)
    message = info.value.message
    assert "worst case $14.08" in message and "budget.max_usd $10.00" in message
    assert "Lower compute.max_runtime to 25568 s" in message and "14.08" in message
    with pytest.raises(BudgetError):  # the render refuses too: submit never gets a request
        get_provider("sagemaker").render(make_plan(toy, "sagemaker"))


def test_an_explicit_max_runtime_within_budget_is_kept():
    toy = spec(compute={"accelerator": "A10G", "max_runtime": "5h"}, budget={"max_usd": 10})
    assert sagemaker_cap(toy) == 5 * 3600  # 5 h x 1.408 = 7.04 <= 10


def test_a_budget_that_buys_minutes_is_refused():
    big = spec(compute={"accelerator": "H100", "count": 8}, budget={"max_usd": 15})
    with pytest.raises(BudgetError, match=r"buys only 477 s"):  # 15 * 3600 / 113.07
        sagemaker_cap(big)


def test_a_budget_without_a_price_cannot_be_enforced():
    toy = spec(aws={"region": "ap-south-1"}, budget={"max_usd": 10})
    with pytest.raises(BudgetError, match="no price for ml.g4dn.xlarge in ap-south-1"):
        sagemaker_cap(toy)


def test_submit_over_budget_exits_2_before_any_call(tmp_path, run_cli, monkeypatch):
    from genai_cloud.providers.sagemaker import SageMakerProvider

    calls = []
    monkeypatch.setattr(SageMakerProvider, "submit", lambda self, plan: calls.append(plan))
    path = tmp_path / "job.yaml"
    path.write_text(f"name: pricey\ntask: pretrain-scratch\nscratch: {{toy_task: copy}}\n"
                    f"training: {{max_steps: 5}}\ncompute: {{accelerator: A10G, max_runtime: 10h}}\n"
                    f"budget: {{max_usd: 10}}\naws: {{role_arn: '{ROLE}', bucket: b}}\n")  # fmt: skip
    code, _, err = run_cli(["submit", str(path), "-p", "sagemaker"])
    assert code == 2 and "Over budget" in err and "Traceback" not in err
    assert calls == []


# ---- cheapest placement --------------------------------------------------------------------


def test_cheapest_t4_is_azure_then_vertex_then_sagemaker():
    placement = cheapest(spec(), check_render=False)
    assert [q.provider for q in placement.ranked] == ["azureml", "vertex", "sagemaker"]
    assert [q.hourly for q in placement.ranked] == [0.526, 0.621, 0.736]
    why = placement.why()
    assert why.startswith("cheapest placement: azureml (Standard_NC4as_T4_v3 x 1 in eastus")
    assert "next: vertex $0.62/h, sagemaker $0.74/h" in why


def test_network_isolation_rules_out_the_cheaper_providers():
    isolated = spec(aws={"network_isolation": True,
                         "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/job:1"})
    placement = cheapest(isolated)
    assert placement.provider == "sagemaker"
    assert set(placement.skipped) == {"vertex", "azureml"}
    assert all("network-isolation is not supported" in r for r in placement.skipped.values())
    assert "not azureml:" in placement.why() and "not vertex:" in placement.why()


def test_a_tpu_spec_goes_to_vertex():
    tpu = spec(compute={"accelerator": "tpu-v5e", "count": 4})
    placement = cheapest(tpu, check_render=False)
    assert placement.provider == "vertex" and placement.quote.instance.type == "ct5lp-hightpu-4t"
    assert set(placement.skipped) == {"sagemaker", "azureml"}


def test_a_provider_whose_render_fails_is_skipped_with_the_reason():
    placement = cheapest(spec())  # no gs:// output.uri: Vertex cannot take it
    assert placement.provider == "azureml"
    assert "output.uri" in placement.skipped["vertex"]
    assert [q.provider for q in placement.ranked] == ["azureml", "sagemaker"]


def test_the_budget_rules_out_providers_it_cannot_pay_for():
    capped = spec(compute={"max_runtime": "10h"}, budget={"max_usd": 6})
    placement = cheapest(capped, check_render=False)  # 10 h: azure 5.26, vertex 6.21, aws 7.36
    assert placement.provider == "azureml"
    assert "exceeds budget.max_usd $6.00" in placement.skipped["vertex"]
    assert "exceeds budget.max_usd $6.00" in placement.skipped["sagemaker"]


def test_no_provider_left_lists_every_reason():
    impossible = spec(compute={"accelerator": "tpu-v5e", "count": 4},
                      aws={"network_isolation": True})  # fmt: skip
    with pytest.raises(ProviderError) as info:
        cheapest(impossible)
    assert info.value.headline == "No placement"
    for name in ("sagemaker", "vertex", "azureml"):
        assert f"  - {name}: " in info.value.message


def test_render_with_provider_cheapest_says_why(tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text("name: tpu-job\ntask: pretrain-scratch\nscratch: {toy_task: copy}\n"
                    "training: {max_steps: 5}\ncompute: {accelerator: tpu-v5e, count: 4}\n"
                    "output: {uri: 'gs://genai-out/runs'}\n")  # fmt: skip
    code, out, err = run_cli(["render", str(path), "-p", "cheapest"])
    assert code == 0
    assert err.startswith("Cheapest placement: vertex (ct5lp-hightpu-4t")
    assert '"machine_type": "ct5lp-hightpu-4t"' in out


def test_launch_region_matches_the_sagemaker_render(monkeypatch):
    from genai_cloud.providers.sagemaker.render import region_of

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    toy = spec()
    assert launch_region(toy, "sagemaker") == region_of(toy) == "us-west-2"
    pinned = spec(compute={"region": "eu-west-1"})
    assert launch_region(pinned, "sagemaker") == region_of(pinned) == "eu-west-1"


def test_launch_region_matches_the_vertex_render_and_submit(monkeypatch):
    """gcp.region, then compute.region, then aiplatform's environment, then us-central1: the
    region priced is the one `render --format native` and submit use."""
    from genai_cloud.providers.vertex import ops as vertex_ops
    from genai_cloud.providers.vertex import render as vertex

    for var in VertexProvider.region_env:
        monkeypatch.delenv(var, raising=False)
    staged = {"gcp": {"staging_bucket": "stage"}}
    assert launch_region(spec(**staged), "vertex") == "us-central1"
    monkeypatch.setenv("CLOUD_ML_REGION", "asia-east1")
    assert launch_region(spec(**staged), "vertex") == "asia-east1"
    moved = spec(compute={"region": "europe-west4"}, **staged)
    assert launch_region(moved, "vertex") == vertex.region_of(moved) == "europe-west4"
    plan = make_plan(moved, "vertex")
    assert "--region=europe-west4" in get_provider("vertex").render_native(plan)
    monkeypatch.setattr(vertex_ops, "resolve_project", lambda project: "proj")
    assert vertex_ops._parent(plan) == ("proj", "europe-west4")
    both = spec(compute={"region": "europe-west4"}, gcp={"region": "us-east4",
                                                         "staging_bucket": "stage"})  # fmt: skip
    assert launch_region(both, "vertex") == "us-east4"


def test_an_aws_shaped_compute_region_is_refused_on_vertex():
    aws_shaped = spec(compute={"region": "eu-west-1"}, gcp={"staging_bucket": "stage"})
    with pytest.raises(ProviderError, match=r"compute\.region: 'eu-west-1' is not a Google Cloud"):
        get_provider("vertex").render(make_plan(aws_shaped, "vertex"))
    ok = spec(compute={"region": "eu-west-1"}, gcp={"region": "europe-west1",
                                                    "staging_bucket": "stage"})  # fmt: skip
    get_provider("vertex").render(make_plan(ok, "vertex"))  # gcp.region wins: no complaint


# ---- the estimate command: options, provider names, what the output says ----------------------

TPU_JOB = ("name: tpu-job\ntask: pretrain-scratch\nscratch: {toy_task: copy}\n"
           "training: {max_steps: 5}\ncompute: {accelerator: tpu-v5e, count: 4}\n")  # fmt: skip


@pytest.mark.parametrize("tokens", ["2e9", "2_000_000_000", "2000000000", "2.0e9"])
def test_tokens_accept_whole_numbers_in_any_notation(tokens, tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text(TPU_JOB)
    code, out, err = run_cli(["estimate", str(path), "--tokens", tokens, "--throughput",
                              "4e5"])  # fmt: skip
    assert code == 0, err
    assert "2,000,000,000 tokens at 400,000 tokens/s" in out


@pytest.mark.parametrize("option, value, why", [
    ("--tokens", "2.5e0", "a whole number"), ("--tokens", "-5", "at least 1"),
    ("--tokens", "0", "at least 1"), ("--tokens", "lots", "a whole number"),
    ("--throughput", "nan", "a positive number"), ("--throughput", "-1", "a positive number"),
    ("--throughput", "inf", "a positive number"),
])  # fmt: skip
def test_bad_tokens_or_throughput_are_rejected_clearly(option, value, why, tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text(TPU_JOB)
    args = {"--tokens": "1e9", "--throughput": "5e4", option: value}
    code, _, err = run_cli(["estimate", str(path), *[x for kv in args.items() for x in kv]])  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert f"Invalid value for '{option}'" in err and why in err and repr(value) in err


@pytest.mark.parametrize("names", [["-p", "nosuch"], ["-p", "vertex,nosuch"]])
def test_estimate_rejects_unknown_provider_names(names, tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text(TPU_JOB)
    code, out, err = run_cli(["estimate", str(path), *names])
    assert code == 2 and out == ""
    assert "unknown provider 'nosuch'; valid providers:" in err and "vertex" in err
    with pytest.raises(ProviderError, match="unknown provider 'nosuch'"):
        estimate(spec(), ["nosuch"])


def test_estimate_reasons_name_the_provider_once(tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text(TPU_JOB)
    code, out, _ = run_cli(["estimate", str(path)])
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("azureml")]
    assert line.startswith("azureml cannot run this spec: compute.accelerator: tpu is not "
                           "supported (")  # fmt: skip
    assert line.count("cannot run this spec") == 1


@pytest.mark.parametrize("sections, basis", [
    ({"compute": {"max_runtime": "3h"}}, "priced for 3.00 h from compute.max_runtime (worst case)"),
    ({}, "priced for 24.00 h from the default compute.max_runtime (1 day; the spec sets none)"),
    ({"budget": {"max_usd": 5}}, ("priced for 24.00 h from the default compute.max_runtime (1 day; "
                                  "the spec sets none), or less where a row's NOTE says what stops "
                                  "it sooner")),
])  # fmt: skip
def test_estimate_header_says_where_the_hours_come_from(sections, basis):
    job = spec(**sections)
    text = cost.format_estimate(estimate(job, ["azureml"]), job)
    assert text.splitlines()[0] == f"price-check: 1 x T4 x 1 node(s); {basis}"


def test_estimate_refuses_a_provider_without_prices_and_counts_aliases_once(tmp_path, run_cli):
    path = tmp_path / "job.yaml"
    path.write_text(TPU_JOB)
    code, _, err = run_cli(["estimate", str(path), "-p", "local"])
    assert code == 2 and "provider 'local' has no price catalog; priced providers:" in err
    result = estimate(spec(compute={"max_runtime": "1h"}), ["aws", "sagemaker"])
    assert [q.provider for q in result.quotes].count("sagemaker") == len(result.quotes) == 3
