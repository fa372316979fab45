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

variable "namespace" {
  description = "Namespace of the app and the workers (create it and its Secrets first, see README)."
  type        = string
  default     = "wattlet"
}

variable "app_image" {
  description = "OCI reference of the Spin app, as `spin registry push` printed it."
  type        = string
}

variable "worker_image" {
  description = "OCI image with the wattlet binary and the built components."
  type        = string
}

variable "nats_url" {
  description = "The NATS cluster (the platform stage's nats_url output)."
  type        = string
  default     = "nats://nats.nats.svc.cluster.local:4222"
}

variable "nats_tls_secret_name" {
  description = "Secret (made by hand, README) with the workers' NATS client certificate (tls.crt, tls.key) and the NATS CA (ca.crt); empty for a NATS without TLS."
  type        = string
  default     = "wattlet-nats-client"
}

variable "nialm_workers" {
  description = "NIALM worker pods."
  type        = number
  default     = 2
}

variable "confidential_node_selector" {
  description = "Labels of the confidential VM node pool."
  type        = map(string)
  default = {
    "wattlet.io/tee" = "sev-snp"
  }
}

variable "tee" {
  description = "The node pool's TEE: sev-snp or tdx."
  type        = string
  default     = "sev-snp"
}
