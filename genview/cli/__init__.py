"""The genview command line (thin wrapper over the Python API)."""
