output "bucket" {
  description = "Bundles, staging, data (under data_prefix) and outputs."
  value       = google_storage_bucket.main.name
}

output "specs_bucket" {
  description = "Write specs under gs://<specs_bucket>/<spec_prefix>; a refused spec gets <spec>.rejected.json beside it."
  value       = google_storage_bucket.specs.name
}

output "launcher_service_account" {
  description = "Runs the launcher function; may create Vertex AI jobs that run as the job account only."
  value       = google_service_account.launcher.email
}

output "job_service_account" {
  description = "gcp.service_account for specs launched outside the function."
  value       = google_service_account.job.email
}

output "launcher_function" {
  description = "The storage-triggered launcher."
  value       = google_cloudfunctions2_function.launcher.name
}

output "launcher_http_url" {
  description = "URL of the HTTP launcher (null when http_invokers is empty)."
  value       = length(google_cloudfunctions2_function.launcher_http) > 0 ? google_cloudfunctions2_function.launcher_http[0].service_config[0].uri : null
}
