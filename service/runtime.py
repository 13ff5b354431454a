"""Process-wide tuning for a serving process: how often the garbage collector runs.

Why: a hook call allocates tens of thousands of short-lived containers (the parsed prefetch and
what is built from it). With CPython's default thresholds (700, 10, 10) those allocations set off
collection after collection, and the full ones walk every object made at start-up as well
(frameworks, models, the rule catalogue). Measured with ``python -m bench.profile --measure``:
parsing the heavy workload's body cost 2.9 ms of CPU with the defaults and 0.9 ms with this.

- ``gc.freeze()`` once start-up is done moves what exists into the permanent generation, which
  no collection walks again (it lives as long as the process anyway).
- A larger first threshold lets a request's temporaries die by reference counting before any
  collection sees them. Reference cycles are still collected, only in larger batches.

Only ``back-knee-cds serve`` calls this: it changes the whole process, so tests and the CLI's
other commands keep CPython's defaults. Apart from this, a large hook call pauses collection while
it has its turn (``service.cdshooks.off_loop``).
"""

from __future__ import annotations

import gc
import logging
import signal
import sys

__all__ = ["FIRST_GENERATION_THRESHOLD", "create_serving_app_from_env", "tune_gc_for_serving"]

FIRST_GENERATION_THRESHOLD = 10_000


def tune_gc_for_serving(*, first_threshold: int = FIRST_GENERATION_THRESHOLD) -> None:
    """Freeze what start-up built and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(first_threshold, second, third)


def create_serving_app_from_env() -> object:
    """uvicorn's factory for several workers: each worker sets up its logging, builds its app, then
    tunes its own GC. Workers are spawned, not forked: nothing the parent configured carries over."""
    from uvicorn.config import STARTUP_FAILURE

    from service.app import create_app
    from service.catalogue_error import CatalogueError
    from service.config_error import ConfigError
    from service.logs import configure_logging
    from service.metrics import MetricsRoomError, reserve_shared_files
    from service.settings import settings_from_env

    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    # A closed terminal sends SIGHUP to the whole process group. uvicorn's supervisor takes it as
    # "restart the workers" and stops each one with SIGTERM, gracefully; a worker killed by the
    # same hangup first lost the audit records it still had queued.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # uvicorn restarts a worker whose factory raises, forever, each time with a traceback; it stops
    # them all (and serve exits 3) only for a worker that exits with its STARTUP_FAILURE code.
    try:
        reserve_shared_files()  # before any count is written
        app = create_app(settings)
    except (ConfigError, CatalogueError, MetricsRoomError) as exc:  # expected; anything else keeps its traceback
        logging.getLogger("service.runtime").error("worker could not start: %s", exc)
        sys.exit(STARTUP_FAILURE)
    tune_gc_for_serving()
    return app
