"""The environment variables the gateway's processes read, named once for the Gateway component
that sets them (llamafleet.components.gateway.gateway_environment) and the plugin that reads
them. Stdlib only: the Pulumi program imports it too."""

from __future__ import annotations

ROUTES = "LLAMAFLEET_GATEWAY_ROUTES"  # the routing table file (routes.Routes JSON)
KEYS = "LLAMAFLEET_GATEWAY_KEYS"  # the key hashes file (keys.KeyTable)
METRICS_PORT = "LLAMAFLEET_GATEWAY_METRICS_PORT"  # the plugin's Prometheus port (9090)
METRICS_ADDR = "LLAMAFLEET_GATEWAY_METRICS_ADDR"  # its address (all interfaces)
PEER_CA = "LLAMAFLEET_GATEWAY_PEER_CA"  # the peers' private CAs (PEM file), if any
REDIS = "LLAMAFLEET_GATEWAY_REDIS"  # host:port where replicas share requests in flight
LONGEST_CALL = "LLAMAFLEET_GATEWAY_LONGEST_CALL"  # seconds a request may last here, at most
