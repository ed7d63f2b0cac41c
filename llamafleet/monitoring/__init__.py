"""What operators see of the fleet: the metrics it relies on, the alerts and dashboards generated
from a stack's settings, and where each Prometheus gets them. Plain data, no Pulumi."""
