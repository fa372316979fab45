output "service_name" {
  description = "The Service devices connect to over mutual TLS (port 443)."
  value       = "wattlet-gateway"
}
