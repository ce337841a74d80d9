"""Generate the example data sets shipped in ``examples/data/`` (deterministic: same bytes every run).

    python examples/make_corpus.py

- ``corpus.jsonl``: short reports from a made-up GPU training fleet. The sentences follow a handful
  of templates whose slots depend on each other (a region belongs to one cloud, a model size
  decides the accelerator count, a status decides the closing sentence), so a small language model
  has real structure to learn and its perplexity drops visibly within a minute of training.
- ``tickets.jsonl``: support tickets labelled ``billing`` / ``outage`` / ``feature`` for the
  sequence-classification example. The label shows in the wording, not in a single keyword.
- ``preferences.jsonl``: preference pairs for the ``dpo`` example: a report's first sentence is
  the prompt, its second sentence the chosen completion and the same words shuffled the
  rejected one (so what is preferred is fluent word order, which carries over to unseen pairs).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240611
N_REPORTS = 1000
N_TICKETS = 600
N_PREFERENCES = 200

CLOUDS = {
    "aws": ["us-east-1", "us-west-2", "eu-west-1"],
    "gcp": ["us-central1", "europe-west4", "asia-east1"],
    "azure": ["eastus", "westeurope", "japaneast"],
}
MODELS = {  # model -> (size label, accelerator, count)
    "gpt2-small": ("124M", "T4", 1),
    "gpt2-medium": ("355M", "A10G", 1),
    "pythia-1b": ("1B", "L4", 2),
    "llama-7b": ("7B", "A100", 4),
    "llama-13b": ("13B", "A100", 8),
    "mistral-7b": ("7B", "H100", 2),
}
PRICES = {"T4": 0.53, "A10G": 1.21, "L4": 0.81, "A100": 3.67, "H100": 6.98}
DATASETS = ["support-chats", "legal-clauses", "recipes", "product-reviews", "code-comments"]
OWNERS = ["ana", "bo", "chen", "dara", "eli", "fatima", "gus", "hana"]


def report(rng: random.Random, number: int) -> str:
    cloud = rng.choice(sorted(CLOUDS))
    region = rng.choice(CLOUDS[cloud])
    model = rng.choice(sorted(MODELS))
    size, accel, count = MODELS[model]
    hours = rng.choice([1, 2, 3, 4, 6, 8, 12])
    spot = rng.random() < 0.5
    price = PRICES[accel] * (0.4 if spot else 1.0)
    cost = price * count * hours
    data = rng.choice(DATASETS)
    owner = rng.choice(OWNERS)
    status = rng.choices(["succeeded", "preempted", "failed"], weights=[6, 3, 1])[0]
    lines = [
        f"Job {number:04d} fine-tuned {model} ({size} parameters) on the {data} dataset for {owner}.",
        (
            f"It ran on {count} {accel} GPU{'s' if count > 1 else ''} in {cloud} {region} as "
            f"{'a spot' if spot else 'an on-demand'} job for {hours} hour{'s' if hours > 1 else ''}."
        ),
        f"The {accel} price was {price:.2f} USD per GPU hour, so the run cost {cost:.2f} USD.",
    ]
    if status == "succeeded":
        loss = rng.uniform(1.2, 2.6)
        lines.append(
            f"Status: succeeded. Final eval loss {loss:.2f}, perplexity {2.718**loss:.1f}."
        )
    elif status == "preempted":
        step = rng.randrange(200, 2000, 50)
        lines.append(
            f"Status: preempted at step {step}. It resumed from the checkpoint at step "
            f"{step - step % 200} and finished."
        )
    else:
        lines.append(f"Status: failed. The {data} dataset had a malformed line; {owner} fixed it.")
    if rng.random() < 0.3:
        lines.append(f"Note: {owner} asked to rerun {model} in {cloud} with a larger batch size.")
    return " ".join(lines)


TICKETS = {
    "billing": [
        "I was charged {n} times for the same {thing} this month.",
        "Our invoice for {month} shows {amount} USD but we expected much less.",
        "Please refund the {thing} that was billed after we cancelled.",
        "Why does the receipt list a {thing} we never ordered?",
        "Can you move our {thing} to the annual plan and credit the difference?",
    ],
    "outage": [
        "The {thing} has been down since {time} and returns errors for every request.",
        "Nothing loads: the {thing} times out from {region} since {time}.",
        "We see 503 responses from the {thing} for all users in {region}.",
        "Since {time} the {thing} is unreachable and our jobs are stuck.",
        "Latency on the {thing} jumped to {n} seconds and then it stopped responding.",
    ],
    "feature": [
        "It would be great if the {thing} could export reports as CSV.",
        "Could you add dark mode to the {thing}?",
        "We would like the {thing} to support single sign-on for our team.",
        "Please consider letting the {thing} schedule jobs every {n} hours.",
        "A webhook when the {thing} finishes would help us a lot.",
    ],
}
THINGS = ["dashboard", "API", "training service", "subscription", "storage bucket", "GPU quota"]


def ticket(rng: random.Random) -> dict:
    label = rng.choice(sorted(TICKETS))
    text = rng.choice(TICKETS[label]).format(
        n=rng.randint(2, 9),
        thing=rng.choice(THINGS),
        amount=rng.randint(90, 9000),
        month=rng.choice(["March", "April", "May", "June"]),
        time=f"{rng.randint(1, 12)} pm",
        region=rng.choice(["Europe", "the US", "Asia"]),
    )
    if rng.random() < 0.4:
        text += rng.choice(
            [" Thanks!", " This is urgent.", " Regards, the ops team.", " Any update?"]
        )
    return {"text": text, "label": label}


def preference(rng: random.Random, text: str) -> dict:
    first, second = text.split(". ")[:2]
    words = second.split(" ")
    shuffled = list(words)
    while shuffled == words:
        rng.shuffle(shuffled)
    return {"prompt": first + ".", "chosen": " " + second + ".", "rejected": " " + " ".join(shuffled) + "."}


def main() -> None:
    rng = random.Random(SEED)
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps({"text": report(rng, n)}) + "\n" for n in range(1, N_REPORTS + 1))
    with open(out / "tickets.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(ticket(rng)) + "\n" for _ in range(N_TICKETS))
    # Own generator: adding this file left the two above byte-identical.
    prefs = random.Random(SEED + 1)
    reports = [json.loads(line)["text"]
               for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    with open(out / "preferences.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(preference(prefs, t)) + "\n" for t in reports[:N_PREFERENCES])
    for name in ("corpus.jsonl", "tickets.jsonl", "preferences.jsonl"):
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
