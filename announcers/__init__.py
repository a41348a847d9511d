"""metallb.announcers."""

if __name__ != "metallb.announcers":  # pragma: no cover - guard against import by path
    raise ImportError(f"import this package as metallb.announcers, not {__name__!r}")
