"""Constants of the quality test store (a uniquely named module: every test folder has a `conftest`)."""

GOOD, POOR = "class_00", "class_01"
K = 2
K_NN = 3
