variable "namespace" {
  description = "Namespace of Prometheus and Grafana."
  type        = string
  default     = "monitoring"
}

variable "chart_version" {
  description = "prometheus-community/kube-prometheus-stack chart version."
  type        = string
  default     = "69.4.1"
}

variable "dashboards_dir" {
  description = "Directory of wattlet's Grafana dashboards (*.json), each loaded into a ConfigMap Grafana's sidecar picks up."
  type        = string
}

variable "rules_dir" {
  description = "Directory of wattlet's Prometheus rule files (*.yml, each `groups: [...]`)."
  type        = string
}

variable "grafana_admin_secret_name" {
  description = "Name of the Secret (in namespace) holding Grafana's admin-user and admin-password keys."
  type        = string
  default     = "grafana-admin"
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples."
  type        = string
  default     = "15d"
}

variable "prometheus_pvc_size" {
  description = "Size of Prometheus' volume."
  type        = string
  default     = "50Gi"
}

variable "storage_class" {
  description = "StorageClass of Prometheus' volume (empty: the cluster's default)."
  type        = string
  default     = ""
}
