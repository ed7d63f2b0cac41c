"""The llamafleet Pulumi program, its settings and its command-line tools."""
