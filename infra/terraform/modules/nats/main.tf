# NATS with JetStream as a cluster of cluster_size servers (the official chart, 1.x values), each
# with a file store on its own volume, spread over nodes so one node lost costs one server. With
# tls_secret_name, clients connect over TLS with a certificate of the NATS CA (verify), and the
# servers route to each other over TLS with that certificate, so nothing without one joins the
# cluster and reads its streams; a NetworkPolicy lets only the client namespaces, the servers
# themselves and Prometheus in.

locals {
  tls = var.tls_secret_name != ""
  # The servers' certificate from the Secret; the peer (a client, or a server dialling a route)
  # presents a certificate of the NATS CA (tlsCA gives every tls block its ca_file).
  server_tls = {
    enabled    = local.tls
    secretName = var.tls_secret_name
    merge = {
      verify  = true
      timeout = 5
    }
  }

  values = {
    # The CA of the clients' certificates, from the same Secret (ca.crt).
    tlsCA = {
      enabled    = local.tls
      secretName = var.tls_secret_name
      key        = "ca.crt"
    }
    config = {
      nats = {
        port = 4222
        tls  = local.server_tls
      }
      cluster = {
        enabled  = true
        replicas = var.cluster_size
        # Routes over TLS both ways: the servers' certificate is also a client's (serverAuth
        # and clientAuth: `wattlet ca server --peer`).
        tls = local.server_tls
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

locals {
  nats_pods = {
    "app.kubernetes.io/name"      = "nats"
    "app.kubernetes.io/component" = "nats"
  }

  network_policy = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "NetworkPolicy"
    metadata = {
      name      = "nats"
      namespace = var.namespace
    }
    spec = {
      podSelector = { matchLabels = local.nats_pods }
      policyTypes = ["Ingress"]
      ingress = [
        {
          # The queue's clients.
          from = [for ns in var.client_namespaces : {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = ns } }
          }]
          ports = [{ port = 4222, protocol = "TCP" }]
        },
        {
          # The servers' routes to each other, and nats-box beside them.
          from = [{ podSelector = { matchLabels = { "app.kubernetes.io/name" = "nats" } } }]
          ports = [
            { port = 4222, protocol = "TCP" },
            { port = 6222, protocol = "TCP" },
          ]
        },
        {
          # Prometheus: the exporter and the monitor.
          from = [{
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = var.monitoring_namespace } }
          }]
          ports = [
            { port = 7777, protocol = "TCP" },
            { port = 8222, protocol = "TCP" },
          ]
        },
      ]
    }
  }
}

resource "kubernetes_manifest" "network_policy" {
  manifest = local.network_policy

  depends_on = [helm_release.nats]
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
