variable "namespace" {
  description = "Namespace of the workers (created by the env)."
  type        = string
}

variable "image" {
  description = "OCI image holding the wattlet binary (/usr/local/bin/wattlet) and the built components (components_dir)."
  type        = string
}

variable "components_dir" {
  description = "Directory of the built components inside the image."
  type        = string
  default     = "/opt/wattlet/components"
}

variable "nats_url" {
  description = "The NATS cluster's client URL."
  type        = string
}

variable "api_url" {
  description = "The Data API (and key broker) the workers reach."
  type        = string
}

variable "stream_replicas" {
  description = "Replicas of the JetStream streams the manager creates (R3 survives one NATS server lost)."
  type        = number
  default     = 3

  validation {
    condition     = var.stream_replicas >= 3 && var.stream_replicas <= 5
    error_message = "Work streams need 3 to 5 replicas (JetStream's most): one NATS server lost must lose no item."
  }
}

variable "manager_token_secret_name" {
  description = "Name of the Secret whose key token is the manager's access token (role manager)."
  type        = string
  default     = "wattlet-manager-token"
}

variable "worker_token_secret_name" {
  description = "Name of the Secret whose key token is the workers' access token (role worker)."
  type        = string
  default     = "wattlet-worker-token"
}

variable "nialm_workers" {
  description = "NIALM worker pods."
  type        = number
  default     = 2
}

variable "stream_workers" {
  description = "DEBS stream worker pods (0: none)."
  type        = number
  default     = 0
}

variable "worker_concurrency" {
  description = "Items each NIALM worker computes at once (one component instance each)."
  type        = number
  default     = 2
}

variable "tee" {
  description = "The confidential VMs' TEE: sev-snp (/dev/sev-guest) or tdx (configfs-tsm)."
  type        = string
  default     = "sev-snp"

  validation {
    condition     = contains(["sev-snp", "tdx"], var.tee)
    error_message = "tee is sev-snp or tdx."
  }
}

variable "confidential_node_selector" {
  description = "Labels of the confidential VM node pool (e.g. a cloud's SEV-SNP or TDX node label)."
  type        = map(string)
  default = {
    "wattlet.io/tee" = "sev-snp"
  }
}

variable "confidential_node_taint_key" {
  description = "Key of the NoSchedule taint on the confidential node pool (empty: not tainted)."
  type        = string
  default     = "wattlet.io/tee"
}

variable "resources" {
  description = "CPU and memory of each worker pod."
  type = object({
    cpu_request    = string
    memory_request = string
    memory_limit   = string
  })
  default = {
    cpu_request    = "1"
    memory_request = "2Gi"
    memory_limit   = "4Gi"
  }
}

variable "pod_monitor" {
  description = "Create a PodMonitor for the NIALM workers' /metrics (needs the Prometheus operator's CRDs)."
  type        = bool
  default     = true
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus (the monitoring module's), the only one that may scrape metrics."
  type        = string
  default     = "monitoring"
}

variable "nats_tls_secret_name" {
  description = "A kubernetes.io/tls Secret with the NATS client certificate of the manager and the workers (tls.crt, tls.key, issued by the NATS CA) and that CA (ca.crt), for a NATS that requires TLS (module nats' tls_secret_name). Empty: plain NATS."
  type        = string
  default     = ""
}
