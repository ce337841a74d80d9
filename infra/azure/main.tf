# genai-cloud on Azure: a spec uploaded to <spec_container>/specs/ launches an Azure ML command
# job through a Function App whose managed identity holds one role: AzureML Data Scientist on
# the workspace (submit jobs; cannot create compute or change the workspace).
#
#   genai-cloud package azure --out infra/azure/build/
#   terraform -chdir=infra/azure init && terraform -chdir=infra/azure apply

data "azurerm_client_config" "current" {}

locals {
  # Storage account and key vault names are global, 3-24 chars; a short hash keeps them unique.
  suffix        = substr(sha256("${data.azurerm_client_config.current.subscription_id}${var.location}${var.name_prefix}"), 0, 6)
  compute_name  = "${var.name_prefix}-gpu"
  workspace_env = "${var.name_prefix}-ws"
}

resource "azurerm_resource_group" "this" {
  name     = "${var.name_prefix}-rg"
  location = var.location
}

# ------------------------------------------------------------------------------------------------
# Monitoring (Azure ML requires Application Insights; the function logs there too)

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name_prefix}-logs"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
}

resource "azurerm_application_insights" "this" {
  name                = "${var.name_prefix}-appinsights"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  workspace_id        = azurerm_log_analytics_workspace.this.id
  application_type    = "web"
}

# ------------------------------------------------------------------------------------------------
# Key vault: the workspace's vault, and where specs' Key Vault secret references point

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs a VNet this module does not create; the firewall below denies by default.
  #checkov:skip=CKV_AZURE_189:Disabling public access needs private endpoints; instead the firewall denies everything but Azure services and allowed_ip_ranges.
  name                       = "${var.name_prefix}kv${local.suffix}"
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  purge_protection_enabled   = true
  soft_delete_retention_days = 90
  rbac_authorization_enabled = true # access by role assignment, no access policies

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.allowed_ip_ranges
  }
}

# ------------------------------------------------------------------------------------------------
# Storage: the workspace's default storage (data, outputs) and the launcher's (specs, host state)

resource "azurerm_storage_account" "ml" {
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure (double) encryption; a customer-managed key needs a key and identity wiring left to the user.
  #checkov:skip=CKV2_AZURE_33:A private endpoint needs a VNet this module does not create; the firewall below denies by default.
  #checkov:skip=CKV_AZURE_33:Queue service logging: the workspace storage holds no queues genai-cloud uses.
  #checkov:skip=CKV_AZURE_59:Azure ML reaches its storage as a trusted service through the public endpoint; the firewall denies everything else but allowed_ip_ranges.
  #checkov:skip=CKV_AZURE_43:The name is computed (name_prefix validated to [a-z0-9]{3,11} + "ml" + 6 hex chars: 11-19 lowercase chars), which checkov cannot evaluate.
  name                              = "${var.name_prefix}ml${local.suffix}"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  account_tier                      = "Standard"
  account_replication_type          = "GRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  public_network_access_enabled     = true # restricted by network_rules (Azure ML reaches it as a trusted service)
  shared_access_key_enabled         = false
  local_user_enabled                = false

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
    ip_rules       = var.allowed_ip_ranges
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }
}

resource "azurerm_storage_account" "launcher" {
  #checkov:skip=CKV_AZURE_35:A Consumption-plan Function App reaches its storage over the public endpoint (no VNet integration on Y1); a firewall would cut the host off.
  #checkov:skip=CKV2_AZURE_40:The Functions host on the Consumption plan needs a key-based AzureWebJobsStorage connection; specs are read with the managed identity.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure (double) encryption; the account holds specs and host state only.
  #checkov:skip=CKV2_AZURE_33:A private endpoint needs a VNet this module does not create (Consumption plan).
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the Consumption-plan host must reach it.
  #checkov:skip=CKV_AZURE_43:The name is computed (name_prefix validated to [a-z0-9]{3,11} + "fn" + 6 hex chars: 11-19 lowercase chars), which checkov cannot evaluate.
  name                              = "${var.name_prefix}fn${local.suffix}"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  account_tier                      = "Standard"
  account_replication_type          = "GRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  shared_access_key_enabled         = true # the Consumption host's AzureWebJobsStorage needs a key

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }

  queue_properties {
    logging {
      delete                = true
      read                  = true
      write                 = true
      version               = "1.0"
      retention_policy_days = 30
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }
}

resource "azurerm_storage_container" "specs" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging is configured through diagnostic settings on the account, outside this module.
  name                  = var.spec_container
  storage_account_id    = azurerm_storage_account.launcher.id
  container_access_type = "private"
}

# ------------------------------------------------------------------------------------------------
# Azure ML workspace and the training cluster

resource "azurerm_machine_learning_workspace" "this" {
  #checkov:skip=CKV2_AZURE_50:Same as CKV_AZURE_144: the workspace storage keeps its public endpoint behind a default-deny firewall (no VNet in this module).
  #checkov:skip=CKV_AZURE_144:Disabling public access needs private endpoints and a VNet this module does not create; access is by Entra ID role only.
  name                    = local.workspace_env
  location                = var.location
  resource_group_name     = azurerm_resource_group.this.name
  application_insights_id = azurerm_application_insights.this.id
  key_vault_id            = azurerm_key_vault.this.id
  storage_account_id      = azurerm_storage_account.ml.id
  high_business_impact    = true # less diagnostic data collected by the service

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_machine_learning_compute_cluster" "gpu" {
  name                          = local.compute_name
  location                      = var.location
  machine_learning_workspace_id = azurerm_machine_learning_workspace.this.id
  vm_size                       = var.compute_vm_size
  vm_priority                   = var.low_priority ? "LowPriority" : "Dedicated"
  local_auth_enabled            = false
  ssh_public_access_enabled     = false

  scale_settings {
    min_node_count                       = 0 # no cost while idle
    max_node_count                       = var.compute_max_nodes
    scale_down_nodes_after_idle_duration = "PT15M"
  }

  identity {
    type = "SystemAssigned"
  }
}

# Jobs read the spec's Key Vault secret references with the cluster's identity: each named
# secret only (a role assignment scoped to one secret), never the whole vault.
resource "azurerm_role_assignment" "cluster_reads_secrets" {
  for_each             = toset(var.secret_names)
  scope                = "${azurerm_key_vault.this.id}/secrets/${each.value}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_machine_learning_compute_cluster.gpu.identity[0].principal_id
}

# ------------------------------------------------------------------------------------------------
# The launcher Function App

resource "azurerm_service_plan" "launcher" {
  #checkov:skip=CKV_AZURE_212:Consumption (Y1) has no instance count to set; the platform scales it.
  #checkov:skip=CKV_AZURE_225:Zone redundancy is not available on the Consumption plan; a launch retried after an outage is idempotent.
  name                = "${var.name_prefix}-plan"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  os_type             = "Linux"
  sku_name            = "Y1" # Consumption: pay per launch
}

resource "azurerm_linux_function_app" "launcher" {
  #checkov:skip=CKV_AZURE_221:The HTTP trigger is called from laptops and CI; a private endpoint needs a plan above Consumption.
  name                        = "${var.name_prefix}-launcher-${local.suffix}"
  location                    = var.location
  resource_group_name         = azurerm_resource_group.this.name
  service_plan_id             = azurerm_service_plan.launcher.id
  storage_account_name        = azurerm_storage_account.launcher.name
  storage_account_access_key  = azurerm_storage_account.launcher.primary_access_key
  https_only                  = true
  client_certificate_enabled  = false
  functions_extension_version = "~4"
  zip_deploy_file             = var.function_source_zip

  identity {
    type = "SystemAssigned"
  }

  # Entra ID in front of the HTTP trigger (App Service authentication): a caller without a token
  # for the app registration gets 401 before the function runs; no shared function key.
  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    unauthenticated_action = "Return401"
    default_provider       = "azureactivedirectory"
    active_directory_v2 {
      client_id            = var.entra_client_id
      tenant_auth_endpoint = "https://login.microsoftonline.com/${data.azurerm_client_config.current.tenant_id}/v2.0"
      allowed_applications = var.entra_allowed_client_ids
    }
    login {
      token_store_enabled = false
    }
  }

  site_config {
    minimum_tls_version                    = "1.2"
    ftps_state                             = "Disabled"
    http2_enabled                          = true
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    application_stack {
      python_version = "3.12"
    }
  }

  app_settings = {
    GENAI_PROVIDER              = "azureml"
    GENAI_AZURE_SUBSCRIPTION_ID = data.azurerm_client_config.current.subscription_id
    GENAI_AZURE_RESOURCE_GROUP  = azurerm_resource_group.this.name
    GENAI_AZURE_WORKSPACE       = azurerm_machine_learning_workspace.this.name
    GENAI_AZURE_COMPUTE         = azurerm_machine_learning_compute_cluster.gpu.name
    GENAI_SPEC_CONTAINER        = var.spec_container
    GENAI_SPEC_PREFIX           = "specs/"
    # Identity-based connection for the blob trigger: no key in the settings.
    GENAI_STORAGE__blobServiceUri  = azurerm_storage_account.launcher.primary_blob_endpoint
    GENAI_STORAGE__queueServiceUri = azurerm_storage_account.launcher.primary_queue_endpoint
    SCM_DO_BUILD_DURING_DEPLOYMENT = "true" # install requirements.txt on deploy
    # The launcher's policy (genai_cloud/serverless/policy.py): what a spec may ask for.
    GENAI_POLICY_ALLOWED_IMAGES          = join(",", var.allowed_images)
    GENAI_POLICY_ALLOWED_ACCELERATORS    = join(",", var.allowed_accelerators)
    GENAI_POLICY_MAX_NODES               = tostring(var.max_nodes)
    GENAI_POLICY_MAX_BUDGET_USD          = tostring(var.max_budget_usd)
    GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE = tostring(var.allow_trust_remote_code)
    GENAI_POLICY_ALLOW_CODE_ENV          = tostring(var.allow_code_env)
  }
}

# The narrowest built-in role that can submit jobs: it cannot create compute or change the
# workspace, and it is scoped to this workspace only.
resource "azurerm_role_assignment" "launcher_submits_jobs" {
  scope                = azurerm_machine_learning_workspace.this.id
  role_definition_name = "AzureML Data Scientist"
  principal_id         = azurerm_linux_function_app.launcher.identity[0].principal_id
}

# The blob trigger reads specs with the identity, on the spec container only.
resource "azurerm_role_assignment" "launcher_reads_specs" {
  scope                = azurerm_storage_container.specs.id
  role_definition_name = "Storage Blob Data Owner" # what the blob trigger extension requires
  principal_id         = azurerm_linux_function_app.launcher.identity[0].principal_id
}

# The blob trigger's poison-message queue lives in the same account.
resource "azurerm_role_assignment" "launcher_poison_queue" {
  scope                = azurerm_storage_account.launcher.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_linux_function_app.launcher.identity[0].principal_id
}
