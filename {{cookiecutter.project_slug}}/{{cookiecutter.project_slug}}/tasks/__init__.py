"""The service's tasks. Importing this package imports every module in it, which
registers every task: a task in a new module here needs no other change."""

import importlib
import pkgutil

for module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{module.name}")
