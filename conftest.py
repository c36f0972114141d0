"""Collection: modules of optional extras are not imported (by --doctest-modules) where the
extra is not installed."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("fastapi") else ["genvis_trust/service_routes.py"]
