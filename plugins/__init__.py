"""metallb.plugins."""

if __name__ != "metallb.plugins":  # pragma: no cover - guard against import by path
    raise ImportError(f"import this package as metallb.plugins, not {__name__!r}")
