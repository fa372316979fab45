# The NIALM work manager and the NIALM and DEBS stream workers, on the confidential VM node pool.
# Workers attest with the VM's TEE (/dev/sev-guest or configfs-tsm from the host) before the key
# broker releases any household key; their tokens come from Secrets, as WATTLET_API_TOKEN.

locals {
  metrics_port = 9465

  tee_mount = {
    "sev-snp" = {
      volume = {
        name = "tee"
        hostPath = {
          path = "/dev/sev-guest"
          type = "CharDevice"
        }
      }
      mount = {
        name      = "tee"
        mountPath = "/dev/sev-guest"
      }
    }
    "tdx" = {
      volume = {
        name = "tee"
        hostPath = {
          path = "/sys/kernel/config/tsm/report"
          type = "Directory"
        }
      }
      mount = {
        name      = "tee"
        mountPath = "/sys/kernel/config/tsm/report"
      }
    }
  }[var.tee]

  tolerations = var.confidential_node_taint_key == "" ? [] : [{
    key      = var.confidential_node_taint_key
    operator = "Exists"
    effect   = "NoSchedule"
  }]

  token_env = {
    manager = [{
      name = "WATTLET_API_TOKEN"
      valueFrom = {
        secretKeyRef = {
          name = var.manager_token_secret_name
          key  = "token"
        }
      }
    }]
    worker = [{
      name = "WATTLET_API_TOKEN"
      valueFrom = {
        secretKeyRef = {
          name = var.worker_token_secret_name
          key  = "token"
        }
      }
    }]
  }

  # The NATS client certificate, mounted where every role's --nats-* options point.
  nats_tls_dir = "/etc/wattlet/nats"
  nats_tls     = var.nats_tls_secret_name != ""
  nats_args = concat(["--nats", var.nats_url], local.nats_tls ? [
    "--nats-ca", "${local.nats_tls_dir}/ca.crt",
    "--nats-cert", "${local.nats_tls_dir}/tls.crt",
    "--nats-key", "${local.nats_tls_dir}/tls.key",
  ] : [])
  nats_volume = {
    name   = "nats-tls"
    secret = { secretName = var.nats_tls_secret_name }
  }
  nats_mount = {
    name      = "nats-tls"
    mountPath = local.nats_tls_dir
    readOnly  = true
  }

  resources = {
    requests = {
      cpu    = var.resources.cpu_request
      memory = var.resources.memory_request
    }
    limits = {
      memory = var.resources.memory_limit
    }
  }

  roles = {
    manager = {
      replicas = 1
      args = concat(["manager", "nialm"], local.nats_args, [
        "--api", var.api_url,
        "--replicas", tostring(var.stream_replicas),
      ])
      env        = local.token_env.manager
      attests    = false
      metrics    = false
      privileged = false
    }
    nialm-worker = {
      replicas = var.nialm_workers
      args = concat(["worker", "nialm"], local.nats_args, [
        "--api", var.api_url,
        "--components", var.components_dir,
        "--concurrency", tostring(var.worker_concurrency),
        "--metrics-listen", "0.0.0.0:${local.metrics_port}",
        "--tee", "auto",
      ])
      env        = local.token_env.worker
      attests    = true
      metrics    = true
      privileged = true
    }
    stream-worker = {
      replicas = var.stream_workers
      args = concat(["worker", "stream"], local.nats_args, [
        "--components", var.components_dir,
        "--key-broker", var.api_url,
        "--metrics-listen", "0.0.0.0:${local.metrics_port}",
        "--tee", "auto",
      ])
      env        = []
      attests    = true
      metrics    = true
      privileged = true
    }
  }

  deployments = {
    for role, r in local.roles : role => {
      apiVersion = "apps/v1"
      kind       = "Deployment"
      metadata = {
        name      = "wattlet-${role}"
        namespace = var.namespace
        labels = {
          "app.kubernetes.io/name"      = "wattlet"
          "app.kubernetes.io/component" = role
        }
      }
      spec = {
        replicas = r.replicas
        selector = {
          matchLabels = {
            "app.kubernetes.io/name"      = "wattlet"
            "app.kubernetes.io/component" = role
          }
        }
        template = {
          metadata = {
            labels = {
              "app.kubernetes.io/name"      = "wattlet"
              "app.kubernetes.io/component" = role
              "wattlet/metrics"             = r.metrics ? "true" : "false"
            }
          }
          spec = {
            nodeSelector = var.confidential_node_selector
            tolerations  = local.tolerations
            # Items are acknowledged only after their results are stored: a pod stopped
            # mid-item loses nothing, its items are redelivered.
            terminationGracePeriodSeconds = 30
            containers = [{
              name  = role
              image = var.image
              args  = r.args
              env = concat(r.env, [{
                name  = "WATTLET_LOG"
                value = "info"
              }])
              ports = r.metrics ? [{
                name          = "metrics"
                containerPort = local.metrics_port
              }] : []
              resources = local.resources
              # Reading the TEE's report device needs it; the node is the confidential VM.
              securityContext = {
                privileged = r.privileged
              }
              volumeMounts = concat(
                r.attests ? [local.tee_mount.mount] : [],
                local.nats_tls ? [local.nats_mount] : [],
              )
            }]
            volumes = concat(
              r.attests ? [local.tee_mount.volume] : [],
              local.nats_tls ? [local.nats_volume] : [],
            )
          }
        }
      }
    }
  }

  # Nothing reaches a worker or the manager but Prometheus (on the metrics port): they only
  # call out (NATS, the Data API, the key broker).
  network_policies = {
    for role, r in local.roles : role => {
      apiVersion = "networking.k8s.io/v1"
      kind       = "NetworkPolicy"
      metadata = {
        name      = "wattlet-${role}"
        namespace = var.namespace
      }
      spec = {
        podSelector = {
          matchLabels = {
            "app.kubernetes.io/name"      = "wattlet"
            "app.kubernetes.io/component" = role
          }
        }
        policyTypes = ["Ingress"]
        ingress = r.metrics ? [{
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
        }] : []
      }
    }
  }

  pod_monitor = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PodMonitor"
    metadata = {
      name      = "wattlet-metrics"
      namespace = var.namespace
    }
    spec = {
      # Every wattlet pod that serves metrics on its port "metrics" (label wattlet/metrics:
      # the NIALM and the stream workers, the gateway).
      selector = {
        matchLabels = {
          "app.kubernetes.io/name" = "wattlet"
          "wattlet/metrics"        = "true"
        }
      }
      podMetricsEndpoints = [{
        port = "metrics"
        path = "/metrics"
        # The job names the dashboards and alerts use (wattlet-nialm-worker, …), not the
        # operator's default <namespace>/<PodMonitor>.
        relabelings = [{
          sourceLabels = ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
          targetLabel  = "job"
          replacement  = "wattlet-$1"
        }]
      }]
    }
  }
}

resource "kubernetes_manifest" "deployment" {
  for_each = local.deployments

  manifest = each.value
}

resource "kubernetes_manifest" "network_policy" {
  for_each = local.network_policies

  manifest = each.value
}

resource "kubernetes_manifest" "pod_monitor" {
  count = var.pod_monitor ? 1 : 0

  manifest = local.pod_monitor
}
