# NATS with JetStream as a cluster of cluster_size servers (the official chart, 1.x values), each
# with a file store on its own volume, spread over nodes so one node lost costs one server.

locals {
  values = {
    config = {
      cluster = {
        enabled  = true
        replicas = var.cluster_size
      }
      jetstream = {
        enabled = true
        fileStore = {
          enabled = true
          dir     = "/data"
          maxSize = var.jetstream_max_file_store
          pvc = {
            enabled          = true
            size             = var.jetstream_pvc_size
            storageClassName = var.storage_class == "" ? null : var.storage_class
          }
        }
        memoryStore = {
          enabled = false
        }
      }
      monitor = {
        enabled = true
      }
    }
    podTemplate = {
      topologySpreadConstraints = {
        "kubernetes.io/hostname" = {
          maxSkew           = 1
          whenUnsatisfiable = "DoNotSchedule"
        }
      }
    }
    promExporter = {
      enabled = true
      podMonitor = {
        enabled = var.pod_monitor
      }
    }
    natsBox = {
      enabled = true
    }
  }
}

resource "helm_release" "nats" {
  name             = "nats"
  namespace        = var.namespace
  create_namespace = true
  repository       = "https://nats-io.github.io/k8s/helm/charts/"
  chart            = "nats"
  version          = var.chart_version
  wait             = true

  values = [yamlencode(local.values)]
}
