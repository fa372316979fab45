output "dashboards" {
  description = "The dashboard files loaded into Grafana."
  value       = sort(tolist(local.dashboards))
}

output "rule_groups" {
  description = "The PrometheusRule objects made from the rule files."
  value       = sort(keys(local.values.additionalPrometheusRulesMap))
}
