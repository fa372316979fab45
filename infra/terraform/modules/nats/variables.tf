variable "namespace" {
  description = "Namespace of the NATS cluster."
  type        = string
  default     = "nats"
}

variable "chart_version" {
  description = "nats-io/k8s nats chart version (the 1.x values layout)."
  type        = string
  default     = "1.3.6"
}

variable "cluster_size" {
  description = "NATS servers in the cluster. R3 streams need at least 3."
  type        = number
  default     = 3

  validation {
    condition     = var.cluster_size >= 3 && var.cluster_size % 2 == 1
    error_message = "The JetStream cluster needs an odd number of at least 3 servers (R3 streams)."
  }
}

variable "jetstream_pvc_size" {
  description = "Size of each server's JetStream file store volume."
  type        = string
  default     = "10Gi"
}

variable "jetstream_max_file_store" {
  description = "JetStream's file store limit per server (below the volume size)."
  type        = string
  default     = "8Gi"
}

variable "storage_class" {
  description = "StorageClass of the JetStream volumes (empty: the cluster's default)."
  type        = string
  default     = ""
}

variable "pod_monitor" {
  description = "Create a PodMonitor for the NATS exporter (needs the Prometheus operator's CRDs)."
  type        = bool
  default     = true
}

variable "tls_secret_name" {
  description = "A kubernetes.io/tls Secret in the namespace: the servers' certificate (tls.crt, tls.key) and the CA of the clients' certificates (ca.crt). Set, clients connect over TLS only and present a certificate of that CA (the NATS CA, not the devices'), and the servers route to each other over TLS with this certificate (issued with `wattlet ca server --peer`, naming every server's route host <release>-<i>.<release>-headless). Empty: no TLS."
  type        = string
  default     = ""
}

variable "client_namespaces" {
  description = "Namespaces whose pods may connect to NATS' client port (the manager's and the workers')."
  type        = list(string)
  default     = ["wattlet"]
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus: the only one that reaches the exporter and the monitor port."
  type        = string
  default     = "monitoring"
}
