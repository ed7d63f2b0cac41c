"""The Pulumi program: a stack's settings in, components wired together (`stack.main`).
`__main__.py` is what `pulumi up` runs (Pulumi.yaml's `main`); the `llamafleet` command runs
`stack.main` inline through the Automation API."""
