"""The gateway's plugin for LiteLLM's proxy: team keys checked against hashes, routing by (team,
model) to the team's own deployments, tier spill-over, a `max_tokens` cap, per-team and
per-model metrics.

`routes` and `keys` are stdlib only: the Pulumi program writes what they read, and the gateway
image installs LiteLLM and this package, nothing else of llamafleet. `litellm_plugin` is what
LiteLLM's config names; it imports LiteLLM and runs only in the gateway's own environment.
"""
