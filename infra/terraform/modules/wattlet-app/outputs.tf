output "service_url" {
  description = "The app inside the cluster (plain HTTP; the Service the operator creates)."
  value       = "http://${var.name}.${var.namespace}.svc.cluster.local"
}
