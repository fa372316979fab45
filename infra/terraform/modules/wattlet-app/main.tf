# The wattlet Spin app (Data API, web UIs, key broker) as a SpinApp run by the containerd Spin
# shim. Secret Spin variables come from a Secret the operator creates (kubectl), so their values
# are in neither the repository nor the Terraform state.

locals {
  local_database = var.libsql_url == ""
  data_dir       = "/mnt/wattlet"

  executor = {
    apiVersion = "core.spinkube.dev/v1alpha1"
    kind       = "SpinAppExecutor"
    metadata = {
      name      = "containerd-shim-spin"
      namespace = var.namespace
    }
    spec = {
      createDeployment = true
      deploymentConfig = {
        runtimeClassName      = var.runtime_class_name
        installDefaultCACerts = true
      }
    }
  }

  secret_variables = ["admin_token", "client_identity_key", "key_encryption_key"]

  variables = concat(
    [for v in local.secret_variables : {
      name = v
      valueFrom = {
        secretKeyRef = {
          name = var.spin_variables_secret_name
          key  = v
        }
      }
    }],
    [{
      name  = "plaintext_results"
      value = "refused"
    }],
    var.attestation_policy_configmap_name == "" ? [] : [{
      name = "attestation_policy"
      valueFrom = {
        configMapKeyRef = {
          name = var.attestation_policy_configmap_name
          key  = "policy.toml"
        }
      }
    }],
  )

  # Indexed, not a conditional: the two bindings have different shapes.
  databases = {
    spin = {
      name = "default"
      type = "spin"
      options = [{
        name  = "path"
        value = "${local.data_dir}/wattlet.db"
      }]
    }
    libsql = {
      name = "default"
      type = "libsql"
      options = [
        {
          name  = "url"
          value = var.libsql_url
        },
        {
          name = "token"
          valueFrom = {
            secretKeyRef = {
              name = var.spin_variables_secret_name
              key  = "libsql_token"
            }
          }
        },
      ]
    }
  }
  database = local.databases[local.local_database ? "spin" : "libsql"]

  database_claim = {
    apiVersion = "v1"
    kind       = "PersistentVolumeClaim"
    metadata = {
      name      = "${var.name}-database"
      namespace = var.namespace
    }
    spec = {
      accessModes      = ["ReadWriteOnce"]
      storageClassName = var.storage_class == "" ? null : var.storage_class
      resources = {
        requests = {
          storage = var.database_volume_size
        }
      }
    }
  }

  app = {
    apiVersion = "core.spinkube.dev/v1alpha1"
    kind       = "SpinApp"
    metadata = {
      name      = var.name
      namespace = var.namespace
    }
    spec = {
      image            = var.image
      executor         = local.executor.metadata.name
      replicas         = var.replicas
      imagePullSecrets = var.image_pull_secret_name == "" ? [] : [{ name = var.image_pull_secret_name }]
      variables        = local.variables
      runtimeConfig = {
        sqliteDatabases = [local.database]
      }
      volumes = local.local_database ? [{
        name = "database"
        persistentVolumeClaim = {
          claimName = local.database_claim.metadata.name
        }
      }] : []
      volumeMounts = local.local_database ? [{
        name      = "database"
        mountPath = local.data_dir
      }] : []
      resources = {
        requests = {
          cpu    = var.resources.cpu_request
          memory = var.resources.memory_request
        }
        limits = {
          memory = var.resources.memory_limit
        }
      }
      checks = {
        readiness = {
          httpGet = {
            path = "/api/health"
          }
        }
        liveness = {
          httpGet = {
            path = "/api/health"
          }
        }
      }
    }
  }
}

# Prometheus reads what only the database knows (consent states, silent devices, pending
# anonymizations) from the app's pods (container port http-app, as spin-operator names it).
locals {
  # The app is reached only through wattlet's own pods (the gateway, the workers, the
  # manager), Prometheus, and the namespaces of an ingress controller the operator names.
  network_policy = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "NetworkPolicy"
    metadata = {
      name      = "${var.name}-app"
      namespace = var.namespace
    }
    spec = {
      podSelector = {
        matchLabels = {
          "core.spinkube.dev/app-name" = var.name
        }
      }
      policyTypes = ["Ingress"]
      ingress = [{
        from = concat(
          [
            {
              podSelector = {
                matchLabels = {
                  "app.kubernetes.io/name" = "wattlet"
                }
              }
            },
          ],
          [for ns in concat([var.monitoring_namespace], var.ingress_namespaces) : {
            namespaceSelector = {
              matchLabels = {
                "kubernetes.io/metadata.name" = ns
              }
            }
          }],
        )
      }]
    }
  }

  pod_monitor = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PodMonitor"
    metadata = {
      name      = "${var.name}-app"
      namespace = var.namespace
    }
    spec = {
      selector = {
        matchLabels = {
          "core.spinkube.dev/app-name" = var.name
        }
      }
      podMetricsEndpoints = [{
        port = "http-app"
        path = "/api/management/metrics"
        # The job name the dashboards and alerts use.
        relabelings = [{
          targetLabel = "job"
          replacement = "wattlet-data-api"
        }]
        authorization = {
          type = "Bearer"
          credentials = {
            name = var.metrics_token_secret_name
            key  = "token"
          }
        }
      }]
    }
  }
}

resource "kubernetes_manifest" "executor" {
  manifest = local.executor
}

resource "kubernetes_manifest" "database_claim" {
  count = local.local_database ? 1 : 0

  manifest = local.database_claim
}

resource "kubernetes_manifest" "app" {
  manifest = local.app

  lifecycle {
    precondition {
      condition     = !local.local_database || var.replicas == 1
      error_message = "A SQLite file on one volume serves one replica: set libsql_url for more."
    }
  }

  depends_on = [kubernetes_manifest.executor, kubernetes_manifest.database_claim]
}

resource "kubernetes_manifest" "network_policy" {
  manifest = local.network_policy
}

resource "kubernetes_manifest" "pod_monitor" {
  count = var.pod_monitor ? 1 : 0

  manifest = local.pod_monitor
}
