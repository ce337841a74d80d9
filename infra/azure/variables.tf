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
