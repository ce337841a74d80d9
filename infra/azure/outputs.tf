output "resource_group" {
  description = "azure.resource_group for specs launched outside the function."
  value       = azurerm_resource_group.this.name
}

output "workspace" {
  description = "azure.workspace for specs."
  value       = azurerm_machine_learning_workspace.this.name
}

output "compute" {
  description = "azure.compute for specs (the training cluster)."
  value       = azurerm_machine_learning_compute_cluster.gpu.name
}

output "key_vault_uri" {
  description = "Put secrets here; reference them in specs as <uri>secrets/<name>."
  value       = azurerm_key_vault.this.vault_uri
}

output "spec_upload_target" {
  description = "Upload specs to this container under specs/ (az storage blob upload --auth-mode login)."
  value       = "${azurerm_storage_account.launcher.name}/${azurerm_storage_container.specs.name}/specs/"
}

output "function_app" {
  description = "The launcher Function App (HTTP: POST https://<host>/api/launch?code=<function key>)."
  value       = azurerm_linux_function_app.launcher.default_hostname
}

output "launcher_principal_id" {
  description = "Object id of the launcher's managed identity."
  value       = azurerm_linux_function_app.launcher.identity[0].principal_id
}
