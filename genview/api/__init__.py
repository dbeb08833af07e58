"""genview.api: the HTTP job service (FastAPI), its job database, executors and Python client.

The web process never runs a model: jobs run as `genview generate` worker processes (or Ray jobs).
`genview serve` starts it; `genview.api.client.GenViewClient` and `genview submit / jobs / status /
cancel` talk to it.
"""
