"""nbflow's Databricks runtime, imported inside each notebook kernel.

:mod:`nbflow.runtime.kernel` is what a kernel loads (the engine's bootstrap imports it; see
:mod:`nbflow.kernel_protocol`); this package's ``__init__`` imports nothing, so that the engine
and the CLI, which use :mod:`nbflow.runtime.context` and :mod:`nbflow.runtime.secrets`, do not
load the kernel's runtime with them.

The runtime is a leaf: it imports nothing of the scheduler, plans, papermill, nbclient, click,
pydantic or the CLI (``tests/test_runtime_leaf.py`` checks it in a fresh interpreter).
"""
