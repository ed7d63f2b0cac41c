"""Delivery through GitHub Actions: what the workflows under `.github/workflows/` run.

`python -m llamafleet.delivery <subcommand>` (see `cli.py`): which stacks a change affects, the
rendered-object diff of a pull request, the preview comment and the drift issue, and the few
GitHub REST calls that post them. Standard library only, and no other llamafleet layer: it runs
before the project's environment exists, and what it diffs comes from `llamafleet` runs.
"""
