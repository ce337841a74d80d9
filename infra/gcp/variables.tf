variable "project_id" {
  description = "GCP project that runs the launcher and the Vertex AI jobs."
  type        = string
}

variable "region" {
  description = "Region of the bucket, the function and the Vertex AI jobs (e.g. us-central1)."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; the bucket is <prefix>-<project_id>."
  type        = string
  default     = "genai-cloud"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix: 3-21 chars of [a-z0-9-], starting with a letter."
  }
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for the bucket (CMEK) and, through GENAI_GCP_KMS_KEY_NAME, for the jobs. null = Google-managed keys."
  type        = string
  default     = null
}

variable "secret_ids" {
  description = "Secret Manager secret ids (projects/P/secrets/S or S) the job service account may read: the spec's secrets references. Nothing else is readable."
  type        = list(string)
  default     = []
}

variable "function_source_zip" {
  description = "Local path of the launcher source zip (genai-cloud package gcp: main.py, requirements.txt, genai_cloud/, job_templates/)."
  type        = string
  default     = "build/genai-cloud-gcp-function.zip"
}

variable "spec_prefix" {
  description = "Object-name prefix whose new objects launch a job (the function skips other objects)."
  type        = string
  default     = "specs/"
}

variable "max_instances" {
  description = "Upper bound on concurrent launcher instances (a cost and rate guard)."
  type        = number
  default     = 5
}

variable "http_invokers" {
  description = "Members (e.g. group:ml@example.com) allowed to call the HTTP launcher; empty = no HTTP function is deployed. Never allUsers."
  type        = list(string)
  default     = []
  validation {
    condition     = !contains(var.http_invokers, "allUsers") && !contains(var.http_invokers, "allAuthenticatedUsers")
    error_message = "http_invokers must name specific members, not allUsers / allAuthenticatedUsers."
  }
}

variable "log_retention_days" {
  description = "Days the access-log bucket keeps usage logs."
  type        = number
  default     = 365
}

variable "data_prefix" {
  description = "Object-name prefix in the main bucket that jobs may read datasets and staged models from."
  type        = string
  default     = "data/"
}

# ---- the launcher's policy (GENAI_POLICY_*; see genai_cloud/serverless/policy.py) ----

variable "allowed_images" {
  description = "Container image URIs a spec may name (an entry ending in * is a prefix); empty = the runtime table's images only."
  type        = list(string)
  default     = []
}

variable "allowed_accelerators" {
  description = "Accelerators a spec may ask for (compute.accelerator and its fallbacks); empty = any."
  type        = list(string)
  default     = ["cpu", "T4", "L4", "A100"]
}

variable "max_nodes" {
  description = "Largest compute.nodes a spec may ask for."
  type        = number
  default     = 2
}

variable "max_budget_usd" {
  description = "Largest budget.max_usd a spec may set, and the budget (a runtime cap) of a spec that sets none."
  type        = number
  default     = 100
}

variable "allow_trust_remote_code" {
  description = "Let specs set model.trust_remote_code (runs the model repository's code as the job account)."
  type        = bool
  default     = false
}

variable "allow_code_env" {
  description = "Let specs set env keys that change code loading (LD_*, PYTHON*, PIP_*, proxies, ...)."
  type        = bool
  default     = false
}
