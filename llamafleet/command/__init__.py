"""The `llamafleet` command: check (`validate`), render under Pulumi's mock monitor, deploy
through the real engine (`engine`, inline Automation API), and serve what the engine deployed
natively (`serve`). The program does not import this package."""
