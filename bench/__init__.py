"""``make bench``: the service against a parse-only baseline under the same load (see bench/run.py)."""

__all__: list[str] = []
