variable "location" {
  description = "Azure region of every resource (e.g. eastus)."
  type        = string
  default     = "eastus"
}

variable "name_prefix" {
  description = "Prefix of resource names; storage and key vault names derive from it (3-11 lowercase letters/digits)."
  type        = string
  default     = "genaicloud"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,10}$", var.name_prefix))
    error_message = "name_prefix: 3-11 chars of [a-z0-9], starting with a letter (storage account names are short and lowercase)."
  }
}

variable "compute_vm_size" {
  description = "VM size of the training cluster nodes (e.g. Standard_NC4as_T4_v3, Standard_NC24ads_A100_v4)."
  type        = string
  default     = "Standard_NC4as_T4_v3"
}

variable "compute_max_nodes" {
  description = "Most nodes the cluster may scale to (it scales to zero when idle)."
  type        = number
  default     = 2
}

variable "low_priority" {
  description = "true: LowPriority (spot) nodes, cheaper and preemptible; the entrypoint resumes from its checkpoints. false: Dedicated."
  type        = bool
  default     = false
}

variable "allowed_ip_ranges" {
  description = "Public IP ranges (CIDR) allowed through the key vault and storage firewalls, e.g. your office or CI; Azure services are always allowed."
  type        = list(string)
  default     = []
}

variable "function_source_zip" {
  description = "Local path of the launcher package (genai-cloud package azure: function_app.py, host.json, requirements.txt, genai_cloud/, job_templates/)."
  type        = string
  default     = "build/genai-cloud-azure-function.zip"
}

variable "spec_container" {
  description = "Blob container whose specs/ folder launches jobs (blob path <container>/specs/{name})."
  type        = string
  default     = "genai"
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace behind Application Insights."
  type        = number
  default     = 90
}

variable "secret_names" {
  description = "Key Vault secret names the training cluster's identity may read (the specs' secrets references); nothing else in the vault."
  type        = list(string)
  default     = []
}

variable "entra_client_id" {
  description = "Client id of the Entra ID app registration that callers of the HTTP launcher get tokens for (App Service authentication)."
  type        = string
}

variable "entra_allowed_client_ids" {
  description = "Client applications (ids) allowed to call the HTTP launcher with their tokens; empty = any in the tenant with a token for the app."
  type        = list(string)
  default     = []
}

# ---- the launcher's policy (GENAI_POLICY_*; see genai_cloud/serverless/policy.py) ----

variable "allowed_images" {
  description = "Container images / environments a spec may name (azure.image, azure.environment; an entry ending in * is a prefix); empty = the runtime table's only."
  type        = list(string)
  default     = []
}

variable "allowed_accelerators" {
  description = "Accelerators a spec may ask for (compute.accelerator and its fallbacks); empty = any."
  type        = list(string)
  default     = ["cpu", "T4", "A100"]
}

variable "max_nodes" {
  description = "Largest compute.nodes a spec may ask for (the cluster's own ceiling is compute_max_nodes)."
  type        = number
  default     = 2
}

variable "max_budget_usd" {
  description = "Largest budget.max_usd a spec may set, and the budget (a runtime cap) of a spec that sets none."
  type        = number
  default     = 100
}

variable "allow_trust_remote_code" {
  description = "Let specs set model.trust_remote_code (runs the model repository's code with the cluster identity)."
  type        = bool
  default     = false
}

variable "allow_code_env" {
  description = "Let specs set env keys that change code loading (LD_*, PYTHON*, PIP_*, proxies, ...)."
  type        = bool
  default     = false
}
