"""Defaults of `genview quality` that the CLI parser needs without importing pyarrow or torch."""

#: DA IC-GAN's neighbourhood size for NN corruption (seed 004, §3: IC-GAN's k = 50).
DEFAULT_K_NN = 50
