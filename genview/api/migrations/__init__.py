"""Alembic migrations of the job database, shipped in the package and run by `genview serve` at start."""
