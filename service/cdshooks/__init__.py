"""The CDS Hooks room: wire models, body parsing, errors, routes, prefetch gathering and client auth.

Nothing is re-exported: callers import the module that holds what they need
(``service.cdshooks.routes``, ``service.cdshooks.models``, ...), so importing one part does not
load the others.
"""

__all__: list[str] = []
