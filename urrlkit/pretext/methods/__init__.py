"""The built-in pretraining methods, one module each: a `MethodSettings` subclass (urrlkit/config/pretext.py) that
declares the method's recipe fields and builds and runs it from the building blocks of urrlkit/pretext (losses,
heads, blocks). Found through the `urrlkit.pretexts` entry points in pyproject.toml, exactly as a third-party
method is; importing one imports no torch (its `build` and `forward` do)."""
