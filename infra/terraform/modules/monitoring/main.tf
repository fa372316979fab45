# Prometheus (operator) and Grafana from kube-prometheus-stack, with wattlet's alert rules in the
# chart's values and its dashboards in ConfigMaps that Grafana's sidecar loads.

locals {
  dashboards = fileset(var.dashboards_dir, "*.json")
  rule_files = fileset(var.rules_dir, "*.yml")

  values = {
    # Every file becomes one PrometheusRule object, named after the file.
    additionalPrometheusRulesMap = {
      for f in local.rule_files :
      "wattlet-${lower(replace(trimsuffix(f, ".yml"), "/[^A-Za-z0-9-]/", "-"))}" => yamldecode(file("${var.rules_dir}/${f}"))
    }
    grafana = {
      admin = {
        existingSecret = var.grafana_admin_secret_name
        userKey        = "admin-user"
        passwordKey    = "admin-password"
      }
      sidecar = {
        dashboards = {
          enabled          = true
          label            = "grafana_dashboard"
          labelValue       = "1"
          searchNamespace  = "ALL"
          folderAnnotation = "grafana_folder"
          provider = {
            foldersFromFilesStructure = true
          }
        }
      }
    }
    prometheus = {
      prometheusSpec = {
        retention = var.prometheus_retention
        # Select the monitors and rules of every release and namespace, not only this chart's.
        podMonitorSelectorNilUsesHelmValues     = false
        serviceMonitorSelectorNilUsesHelmValues = false
        ruleSelectorNilUsesHelmValues           = false
        storageSpec = {
          volumeClaimTemplate = {
            spec = {
              storageClassName = var.storage_class == "" ? null : var.storage_class
              accessModes      = ["ReadWriteOnce"]
              resources = {
                requests = {
                  storage = var.prometheus_pvc_size
                }
              }
            }
          }
        }
      }
    }
  }
}

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  namespace        = var.namespace
  create_namespace = true
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.chart_version
  wait             = true

  values = [yamlencode(local.values)]
}

resource "kubernetes_config_map_v1" "dashboards" {
  for_each = local.dashboards

  metadata {
    name      = "wattlet-dashboard-${lower(replace(trimsuffix(each.key, ".json"), "/[^A-Za-z0-9-]/", "-"))}"
    namespace = var.namespace
    labels = {
      grafana_dashboard = "1"
    }
    annotations = {
      grafana_folder = "wattlet"
    }
  }

  data = {
    (each.key) = file("${var.dashboards_dir}/${each.key}")
  }

  depends_on = [helm_release.kube_prometheus_stack]
}
