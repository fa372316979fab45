variable "kubeconfig" {
  description = "Path of the kubeconfig that reaches the cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "Context in the kubeconfig (empty: its current context)."
  type        = string
  default     = ""
}

variable "storage_class" {
  description = "StorageClass of NATS' and Prometheus' volumes (empty: the cluster's default)."
  type        = string
  default     = ""
}

variable "jetstream_pvc_size" {
  description = "JetStream volume per NATS server."
  type        = string
  default     = "10Gi"
}

variable "prometheus_pvc_size" {
  description = "Prometheus' volume."
  type        = string
  default     = "20Gi"
}

variable "nats_tls_secret_name" {
  description = "Secret (made by hand in the nats namespace, README) with the NATS servers' certificate (tls.crt, tls.key) and the NATS CA that signs the clients' (ca.crt); empty for no TLS."
  type        = string
  default     = "nats-server-tls"
}
