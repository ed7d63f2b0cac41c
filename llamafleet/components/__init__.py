"""Reusable llamafleet components. Each module owns one concern; the plain modules (sizing,
server_args, inference_pod, autoscaling, pod_security) import no Pulumi."""
