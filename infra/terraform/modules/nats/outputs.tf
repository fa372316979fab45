output "url" {
  description = "The NATS client URL inside the cluster."
  value       = "nats://nats.${var.namespace}.svc.cluster.local:4222"
}
