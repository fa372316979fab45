output "runtime_class_name" {
  description = "The RuntimeClass SpinApps run with."
  value       = local.runtime_class.metadata.name
}
