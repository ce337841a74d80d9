"""The commented example spec that `genai-cloud init` writes."""

EXAMPLE_SPEC = """\
# genai-cloud run genai-job.yaml            (locally)
# genai-cloud submit genai-job.yaml -p sagemaker   (or vertex, azureml)
# Every field: `genai-cloud schema`. Relative paths are relative to this file.
name: my-finetune
task: finetune            # finetune | pretrain-scratch | distill | prune | evaluate | audit | fairness | dpo

model:
  name_or_path: gpt2      # hub id, local folder, or s3:// gs:// azureml:// URI
  head: causal-lm         # causal-lm | sequence-classification
  # lora: {r: 8, alpha: 16}

data:
  train: data/train.jsonl # file or folder; s3:// for SageMaker, gs:// for Vertex
  format: jsonl           # text | jsonl | instruction | chat | classification
  text_field: text
  max_seq_len: 512
  packing: true           # concatenate documents into full blocks: no padding waste

training:
  epochs: 1               # or max_steps
  lr: 5.0e-5
  batch_size: 8
  precision: auto         # bf16 on GPUs that have it, fp32 on CPU
  checkpoint_every: 200   # steps; needed to resume after a spot eviction

compute:
  accelerator: cpu        # cpu | T4 | L4 | A10G | A100 | H100 | tpu-v5e | ...
  count: 1                # per node
  nodes: 1
  spot: false
  max_runtime: 2h

output:
  uri: null               # s3://bucket/prefix, gs://bucket/prefix, azureml://...

labels: {team: research}

# Per-provider settings (only the one you submit to is read):
# aws:   {role_arn: "arn:aws:iam::123456789012:role/SageMakerExecution", region: us-east-1}
# gcp:   {project: my-project, region: us-central1, staging_bucket: gs://my-bucket}
# azure: {subscription_id: ..., resource_group: ..., workspace: ..., compute: gpu-cluster}
"""
