# genai-cloud on Google Cloud: a spec written under gs://<bucket>/specs/ launches a Vertex AI
# CustomJob through a 2nd-gen Cloud Function.
#
#   genai-cloud package gcp --out infra/gcp/build/
#   terraform -chdir=infra/gcp init && terraform -chdir=infra/gcp apply -var project_id=my-project
#
# Two service accounts: "launcher" runs the function and may only create Vertex AI jobs that run
# as "job"; "job" runs the training and may only use this bucket and the named secrets. Specs
# live in a bucket of their own: the trigger fires for spec writes only (not for every
# checkpoint a job writes), and the job account cannot write there, so a job cannot launch jobs.

data "google_project" "this" {}

data "google_storage_project_service_account" "gcs" {}

locals {
  bucket_name = "${var.name_prefix}-${var.project_id}"
  specs_name  = "${var.name_prefix}-${var.project_id}-specs"
  objects     = "projects/_/buckets/${local.bucket_name}/objects"
  # Secret ids may be given short ("my-secret") or full ("projects/p/secrets/my-secret").
  secret_ids = toset([for s in var.secret_ids : element(split("/", s), length(split("/", s)) - 1)])
  launcher_env = {
    GENAI_PROVIDER            = "vertex"
    GENAI_SPEC_PREFIX         = var.spec_prefix
    GENAI_GCP_PROJECT         = var.project_id
    GENAI_GCP_REGION          = var.region
    GENAI_GCP_STAGING_BUCKET  = "gs://${local.bucket_name}/genai-cloud/staging"
    GENAI_GCP_SERVICE_ACCOUNT = google_service_account.job.email
    GENAI_OUTPUT_URI          = "gs://${local.bucket_name}/genai-cloud/outputs"
    GENAI_GCP_KMS_KEY_NAME    = var.kms_key_name == null ? "" : var.kms_key_name
    # The launcher's policy (genai_cloud/serverless/policy.py): what a spec may ask for.
    GENAI_POLICY_ALLOWED_IMAGES          = join(",", var.allowed_images)
    GENAI_POLICY_ALLOWED_ACCELERATORS    = join(",", var.allowed_accelerators)
    GENAI_POLICY_MAX_NODES               = tostring(var.max_nodes)
    GENAI_POLICY_MAX_BUDGET_USD          = tostring(var.max_budget_usd)
    GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE = tostring(var.allow_trust_remote_code)
    GENAI_POLICY_ALLOW_CODE_ENV          = tostring(var.allow_code_env)
  }
}

# ------------------------------------------------------------------------------------------------
# Identities

resource "google_service_account" "launcher" {
  account_id   = "${var.name_prefix}-launcher"
  display_name = "genai-cloud launcher function"
}

resource "google_service_account" "job" {
  account_id   = "${var.name_prefix}-job"
  display_name = "genai-cloud Vertex AI training jobs"
}

# Creating a CustomJob needs aiplatform.customJobs.create, which has no narrower scope than the
# project (Vertex AI has no per-job IAM).
resource "google_project_iam_member" "launcher_vertex" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.launcher.email}"
}

# actAs on the job's account only, not project-wide: the launcher cannot run jobs as anyone else.
resource "google_service_account_iam_member" "launcher_acts_as_job" {
  service_account_id = google_service_account.job.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.launcher.email}"
}

resource "google_secret_manager_secret_iam_member" "job_reads_secret" {
  for_each  = local.secret_ids
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

# ------------------------------------------------------------------------------------------------
# Storage

resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This bucket receives the main bucket's usage logs; logging it into itself would loop.
  #checkov:skip=CKV_GCP_78:Usage logs are written once and expire; versions would only keep deleted logs longer.
  name                        = "${local.bucket_name}-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  lifecycle_rule {
    condition {
      age = var.log_retention_days
    }
    action {
      type = "Delete"
    }
  }
}

# Cloud Storage usage logs are written by this Google group (Cloud Storage usage-logs docs).
resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket" "main" {
  name                        = local.bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gcs_uses_key]
}

# With CMEK, Cloud Storage's own service agent must be able to use the key.
resource "google_kms_crypto_key_iam_member" "gcs_uses_key" {
  count         = var.kms_key_name == null ? 0 : 1
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# The launcher writes bundles under genai-cloud/staging/ only; the job reads staging and data and
# writes under genai-cloud/outputs/ only. objectUser = get/list/create/update objects, no IAM or
# bucket changes; the conditions keep each to its prefixes (listing is a bucket-level check).
resource "google_storage_bucket_iam_member" "launcher_objects" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.launcher.email}"
  condition {
    title      = "launcher-staging-only"
    expression = "resource.type == \"storage.googleapis.com/Bucket\" || resource.name.startsWith(\"${local.objects}/genai-cloud/staging/\")"
  }
}

resource "google_storage_bucket_iam_member" "job_reads" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.job.email}"
  condition {
    title      = "job-reads-staging-data-outputs"
    expression = "resource.type == \"storage.googleapis.com/Bucket\" || resource.name.startsWith(\"${local.objects}/genai-cloud/\") || resource.name.startsWith(\"${local.objects}/${var.data_prefix}\")"
  }
}

resource "google_storage_bucket_iam_member" "job_writes" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.job.email}"
  condition {
    title      = "job-writes-outputs-only"
    expression = "resource.name.startsWith(\"${local.objects}/genai-cloud/outputs/\")"
  }
}

# Specs: written by people and CI (grant them roles/storage.objectCreator here), read by the
# launcher, which may add only <spec>.rejected.json records beside them.
resource "google_storage_bucket" "specs" {
  #checkov:skip=CKV_GCP_62:Spec writes are recorded by Cloud Audit Logs (data access) and the launcher's own log lines; a usage-log bucket for a few KB of specs adds nothing.
  name                        = local.specs_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gcs_uses_key]
}

resource "google_storage_bucket_iam_member" "launcher_reads_specs" {
  bucket = google_storage_bucket.specs.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.launcher.email}"
}

resource "google_storage_bucket_iam_member" "launcher_records_rejections" {
  bucket = google_storage_bucket.specs.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.launcher.email}"
  condition {
    title      = "rejection-records-only"
    expression = "resource.name.endsWith(\".rejected.json\")"
  }
}

resource "google_storage_bucket_object" "function_source" {
  name   = "genai-cloud/functions/source-${filemd5(var.function_source_zip)}.zip"
  bucket = google_storage_bucket.main.name
  source = var.function_source_zip
}

# ------------------------------------------------------------------------------------------------
# Eventarc plumbing for the storage trigger

# Cloud Storage publishes object events through Pub/Sub as its service agent.
resource "google_project_iam_member" "gcs_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_project_iam_member" "launcher_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.launcher.email}"
}

# ------------------------------------------------------------------------------------------------
# The launcher

resource "google_cloudfunctions2_function" "launcher" {
  name        = "${var.name_prefix}-launcher"
  location    = var.region
  description = "Launches a Vertex AI job for each spec written under ${var.spec_prefix}"

  build_config {
    runtime     = "python313"
    entry_point = "launch_gcs"
    source {
      storage_source {
        bucket = google_storage_bucket.main.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.launcher.email
    max_instance_count             = var.max_instances
    available_memory               = "512M"
    timeout_seconds                = 120
    ingress_settings               = "ALLOW_INTERNAL_ONLY" # only Eventarc reaches it
    all_traffic_on_latest_revision = true
    environment_variables          = local.launcher_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY" # safe: submit finds the job a retry already made
    service_account_email = google_service_account.launcher.email
    # Cloud Storage events filter by bucket only: the specs bucket, so job outputs and
    # checkpoints in the main bucket never invoke the launcher.
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.specs.name
    }
  }

  depends_on = [
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.launcher_receives_events,
  ]
}

# Eventarc delivers to the function's Cloud Run service as the trigger's service account.
resource "google_cloud_run_service_iam_member" "trigger_invokes_launcher" {
  location = var.region
  service  = google_cloudfunctions2_function.launcher.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.launcher.email}"
}

# Optional HTTP launcher (POST a spec), callable only by the members in var.http_invokers.
resource "google_cloudfunctions2_function" "launcher_http" {
  #checkov:skip=CKV_GCP_124:Callers are laptops and CI outside the VPC; IAM (run.invoker for var.http_invokers only, never allUsers) is the gate.
  count       = length(var.http_invokers) > 0 ? 1 : 0
  name        = "${var.name_prefix}-launcher-http"
  location    = var.region
  description = "POST a genai-cloud spec to launch a Vertex AI job"

  build_config {
    runtime     = "python313"
    entry_point = "launch_http"
    source {
      storage_source {
        bucket = google_storage_bucket.main.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.launcher.email
    max_instance_count             = var.max_instances
    available_memory               = "512M"
    timeout_seconds                = 120
    ingress_settings               = "ALLOW_ALL" # authenticated callers only: no allUsers invoker
    all_traffic_on_latest_revision = true
    environment_variables          = local.launcher_env
  }
}

resource "google_cloud_run_service_iam_member" "http_invokers" {
  for_each = length(var.http_invokers) > 0 ? toset(var.http_invokers) : toset([])
  location = var.region
  service  = google_cloudfunctions2_function.launcher_http[0].name
  role     = "roles/run.invoker"
  member   = each.value
}
