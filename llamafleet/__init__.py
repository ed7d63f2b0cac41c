"""llamafleet: llama.cpp's llama-server for many teams across on-prem and cloud Kubernetes.

The layers, each importing only the ones below it (tests/unit/test_layers.py checks):

- `llamafleet.command`: the `llamafleet` command (CLI, render under mocks, the engine driver,
  native serving of what the engine deployed). Nothing below imports it.
- `llamafleet.program`: the Pulumi program; settings in, components wired together.
- `llamafleet.settings`: a stack's `llamafleet:*` settings, typed and checked (`validate`).
- `llamafleet.components`: reusable Pulumi components, each with its typed config.
- `llamafleet.modelsync`: model distribution through S3 (no Pulumi import; the fetcher image
  installs only it and this file).
- `llamafleet.policy`: policy rules over rendered objects, and their CrossGuard pack.

This module imports no project module, so the model fetcher image can install
`llamafleet.modelsync` with it alone.
"""

from pathlib import Path

# The checkout the package runs from (installed editable, `pip install -e .`): Pulumi.yaml,
# stacks/, images/ (the images' build contexts).
REPO_ROOT = Path(__file__).resolve().parent.parent
