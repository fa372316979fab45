variable "namespace" {
  description = "Namespace of the gateway (created by the env)."
  type        = string
}

variable "image" {
  description = "OCI image holding the wattlet binary (/usr/local/bin/wattlet)."
  type        = string
}

variable "upstream" {
  description = "The Data API inside the cluster, plain HTTP (the SpinApp's Service: module.app.service_url)."
  type        = string
}

variable "replicas" {
  description = "Gateway pods (each checks certificates and signs proofs on its own)."
  type        = number
  default     = 2
}

variable "tls_secret_name" {
  description = "Name of the Secret with the gateway's server certificate (tls.crt, tls.key), the survey CA (ca.crt) and its CRL (crl.pem), created by the operator."
  type        = string
  default     = "wattlet-gateway-tls"
}

variable "spin_variables_secret_name" {
  description = "Name of the Secret holding the app's Spin variables; the gateway reads client_identity_key from it."
  type        = string
  default     = "wattlet-spin-variables"
}

variable "service_type" {
  description = "Type of the Service devices connect to (LoadBalancer: port 443 outside the cluster)."
  type        = string
  default     = "LoadBalancer"

  validation {
    condition     = contains(["LoadBalancer", "NodePort", "ClusterIP"], var.service_type)
    error_message = "service_type is LoadBalancer, NodePort or ClusterIP."
  }
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus (the monitoring module's), the only one that may scrape metrics."
  type        = string
  default     = "monitoring"
}
