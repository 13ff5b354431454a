"""The rule engine: the catalogue in ``rules/`` loaded and checked, and rules evaluated on facts.

Nothing is re-exported: callers import the module they need (``service.engine.catalogue``,
``service.engine.evaluate``, ...).
"""

__all__: list[str] = []
