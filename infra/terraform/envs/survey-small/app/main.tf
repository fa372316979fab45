# Stage 2 of 2: the wattlet app and its workers. The namespace and its Secrets are made by hand
# first (README), so no secret value passes through Terraform or its state.

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context == "" ? null : var.kube_context
}

module "app" {
  source = "../../../modules/wattlet-app"

  namespace = var.namespace
  image     = var.app_image
  replicas  = 1
}

module "workers" {
  source = "../../../modules/workers"

  namespace                  = var.namespace
  image                      = var.worker_image
  nats_url                   = var.nats_url
  nats_tls_secret_name       = var.nats_tls_secret_name
  api_url                    = module.app.service_url
  stream_replicas            = 3
  nialm_workers              = var.nialm_workers
  tee                        = var.tee
  confidential_node_selector = var.confidential_node_selector
}

module "gateway" {
  source = "../../../modules/gateway"

  namespace = var.namespace
  image     = var.worker_image
  upstream  = module.app.service_url
}

output "app_url" {
  value = module.app.service_url
}
