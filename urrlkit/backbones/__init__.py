"""The built-in backbones as plugins: one module each declares a backbone's settings (a `BackboneSettings`
subclass, urrlkit/config/model.py) and builds its encoder from the building blocks of urrlkit/models. Found
through the `urrlkit.backbones` entry points in pyproject.toml, as a third-party backbone is; torch-free until
`build` runs."""
