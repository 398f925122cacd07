"""Torch-free pieces that recipe validation needs besides the plugins' own settings: the built-in families'
parameter checks and declarations (families.py, with the factories' exact signatures; their entry points in
pyproject.toml name the declarations), the value checks they share (param_checks.py), and paper Eq. 2's p →
family weights (family_mix.py).

Every built-in registry entry — data sets, families, methods, backbones, regularizers, corruptions, evaluation
suites — is an entry point of urrlkit's pyproject.toml, found as a third-party package's are (urrlkit/registry.py);
nothing is listed here."""
