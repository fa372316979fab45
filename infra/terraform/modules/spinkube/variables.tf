variable "cert_manager_chart_version" {
  description = "jetstack/cert-manager chart version (the operator's admission webhooks need cert-manager)."
  type        = string
  default     = "v1.17.1"
}

variable "spin_operator_version" {
  description = "spin-operator release: its Helm chart and the CRDs of the same release."
  type        = string
  default     = "0.5.0"
}

variable "install_kwasm_operator" {
  description = "Install containerd-shim-spin on annotated nodes with kwasm-operator (false: the nodes' image already has the shim)."
  type        = bool
  default     = true
}

variable "kwasm_operator_chart_version" {
  description = "kwasm/kwasm-operator chart version."
  type        = string
  default     = "0.2.3"
}

variable "shim_installer_image" {
  description = "The node installer image that puts containerd-shim-spin on annotated nodes."
  type        = string
  default     = "ghcr.io/spinkube/containerd-shim-spin/node-installer:v0.18.0"
}

variable "wasm_node_selector" {
  description = "Labels of the nodes that have the Spin shim: pods of the wasmtime-spin-v2 runtime class are scheduled there only."
  type        = map(string)
  default     = {}
}
