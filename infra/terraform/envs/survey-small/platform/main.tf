# Stage 1 of 2: what the app stands on. Custom resources (SpinApp, SpinAppExecutor, PodMonitor)
# are applied in ../app, once their CRDs exist: kubernetes_manifest reads them at plan time.

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context == "" ? null : var.kube_context
}

provider "helm" {
  kubernetes {
    config_path    = var.kubeconfig
    config_context = var.kube_context == "" ? null : var.kube_context
  }
}

module "spinkube" {
  source = "../../../modules/spinkube"
}

module "monitoring" {
  source = "../../../modules/monitoring"

  dashboards_dir      = "${path.module}/../../../../grafana/dashboards"
  rules_dir           = "${path.module}/../../../../prometheus/rules"
  prometheus_pvc_size = var.prometheus_pvc_size
  storage_class       = var.storage_class
}

module "nats" {
  source = "../../../modules/nats"

  cluster_size       = 3
  jetstream_pvc_size = var.jetstream_pvc_size
  storage_class      = var.storage_class
  tls_secret_name    = var.nats_tls_secret_name

  # The exporter's PodMonitor needs the Prometheus operator's CRDs.
  depends_on = [module.monitoring]
}

output "nats_url" {
  value = module.nats.url
}
