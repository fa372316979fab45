# `wattlet gateway`: the mutual-TLS front devices connect to. The SpinApp speaks plain HTTP
# inside the cluster and the Data API trusts a device only with the identity proof its TLS
# terminator signs with client_identity_key; an ordinary ingress cannot sign it. The gateway
# checks device certificates against the survey CA and its CRL (watched: `kubectl apply` a new
# crl.pem and revoked devices are refused), signs the proof and forwards to the app. People with
# tokens connect without a certificate (--client-auth optional).

locals {
  port         = 8443
  metrics_port = 9469
  tls_dir      = "/etc/wattlet/tls"

  labels = {
    "app.kubernetes.io/name"      = "wattlet"
    "app.kubernetes.io/component" = "gateway"
  }

  deployment = {
    apiVersion = "apps/v1"
    kind       = "Deployment"
    metadata = {
      name      = "wattlet-gateway"
      namespace = var.namespace
      labels    = local.labels
    }
    spec = {
      replicas = var.replicas
      selector = {
        matchLabels = local.labels
      }
      template = {
        metadata = {
          labels = merge(local.labels, { "wattlet/metrics" = "true" })
        }
        spec = {
          terminationGracePeriodSeconds = 40
          containers = [{
            name  = "gateway"
            image = var.image
            args = [
              "gateway",
              "--upstream", var.upstream,
              "--listen", "0.0.0.0:${local.port}",
              "--admin-listen", "0.0.0.0:${local.metrics_port}",
              "--tls-cert", "${local.tls_dir}/tls.crt",
              "--tls-key", "${local.tls_dir}/tls.key",
              "--client-ca", "${local.tls_dir}/ca.crt",
              "--crl", "${local.tls_dir}/crl.pem",
              "--client-auth", "optional",
            ]
            env = [
              {
                name = "SPIN_VARIABLE_CLIENT_IDENTITY_KEY"
                valueFrom = {
                  secretKeyRef = {
                    name = var.spin_variables_secret_name
                    key  = "client_identity_key"
                  }
                }
              },
              {
                name  = "WATTLET_LOG"
                value = "info"
              },
            ]
            ports = [
              {
                name          = "https"
                containerPort = local.port
              },
              {
                name          = "metrics"
                containerPort = local.metrics_port
              },
            ]
            volumeMounts = [{
              name      = "tls"
              mountPath = local.tls_dir
              readOnly  = true
            }]
          }]
          volumes = [{
            name = "tls"
            secret = {
              secretName = var.tls_secret_name
            }
          }]
        }
      }
    }
  }

  # Devices (anyone) reach the TLS port; only Prometheus the metrics port.
  network_policy = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "NetworkPolicy"
    metadata = {
      name      = "wattlet-gateway"
      namespace = var.namespace
    }
    spec = {
      podSelector = {
        matchLabels = local.labels
      }
      policyTypes = ["Ingress"]
      ingress = [
        {
          ports = [{
            port     = local.port
            protocol = "TCP"
          }]
        },
        {
          from = [{
            namespaceSelector = {
              matchLabels = {
                "kubernetes.io/metadata.name" = var.monitoring_namespace
              }
            }
          }]
          ports = [{
            port     = local.metrics_port
            protocol = "TCP"
          }]
        },
      ]
    }
  }

  service = {
    apiVersion = "v1"
    kind       = "Service"
    metadata = {
      name      = "wattlet-gateway"
      namespace = var.namespace
      labels    = local.labels
    }
    spec = {
      type     = var.service_type
      selector = local.labels
      ports = [{
        name       = "https"
        port       = 443
        targetPort = local.port
        protocol   = "TCP"
      }]
    }
  }
}

resource "kubernetes_manifest" "deployment" {
  manifest = local.deployment
}

resource "kubernetes_manifest" "service" {
  manifest = local.service
}

resource "kubernetes_manifest" "network_policy" {
  manifest = local.network_policy
}
