variable "namespace" {
  description = "Namespace of the app (created by the env)."
  type        = string
}

variable "name" {
  description = "Name of the SpinApp; also its Service's name (port 80)."
  type        = string
  default     = "wattlet"
}

variable "image" {
  description = "OCI reference of the Spin app (`spin registry push`), by digest or tag."
  type        = string
}

variable "image_pull_secret_name" {
  description = "Name of a docker-registry Secret for a private registry (empty: none)."
  type        = string
  default     = ""
}

variable "replicas" {
  description = "Replicas of the Spin app. More than 1 needs a shared database (libsql_url): the local SQLite file lives on one volume."
  type        = number
  default     = 1
}

variable "runtime_class_name" {
  description = "The RuntimeClass of the Spin shim."
  type        = string
  default     = "wasmtime-spin-v2"
}

variable "spin_variables_secret_name" {
  description = "Name of the Secret holding the app's secret Spin variables: keys admin_token, client_identity_key, key_encryption_key (and libsql_token with libsql_url)."
  type        = string
  default     = "wattlet-spin-variables"
}

variable "attestation_policy_configmap_name" {
  description = "Name of a ConfigMap whose key policy.toml is the key broker's attestation policy (empty: the strict default)."
  type        = string
  default     = ""
}

variable "libsql_url" {
  description = "A libSQL server for the app's database (empty: a SQLite file on a volume, one replica)."
  type        = string
  default     = ""
}

variable "database_volume_size" {
  description = "Size of the SQLite database volume (without libsql_url)."
  type        = string
  default     = "20Gi"
}

variable "storage_class" {
  description = "StorageClass of the database volume (empty: the cluster's default)."
  type        = string
  default     = ""
}

variable "resources" {
  description = "CPU and memory of each app pod."
  type = object({
    cpu_request    = string
    memory_request = string
    memory_limit   = string
  })
  default = {
    cpu_request    = "250m"
    memory_request = "256Mi"
    memory_limit   = "1Gi"
  }
}

variable "pod_monitor" {
  description = "Let Prometheus scrape the app's /api/management/metrics (needs the Prometheus operator's CRDs and the metrics token Secret)."
  type        = bool
  default     = true
}

variable "metrics_token_secret_name" {
  description = "Name of the Secret whose key token is the read-only administrator token Prometheus scrapes the app with."
  type        = string
  default     = "wattlet-metrics-token"
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus (the monitoring module's), the only one that may scrape metrics."
  type        = string
  default     = "monitoring"
}

variable "ingress_namespaces" {
  description = "Namespaces of ingress controllers that may reach the app (people with tokens; devices come through the gateway). Empty: only wattlet's pods and Prometheus."
  type        = list(string)
  default     = []
}
