"""The ``nbflow`` command line: thin click commands over the library, one module per group.

``main`` (the group and ``main()``, the console script) loads each command's module when that
command runs; :mod:`~nbflow.cli.commands` lists them with their one-line help. ``run`` (with
``plan``, its plan branch), ``validate`` (``validate``, ``schema``), ``inspect``, ``compare``,
``cluster``, ``table``, ``remote`` and ``serve`` hold the commands: they parse options, call the
library (:func:`nbflow.run_notebook`, :func:`nbflow.run_plan`, :mod:`nbflow.compare`,
:mod:`nbflow.remote.deploy`...) and print. :mod:`~nbflow.cli.exits` holds the one error handler
and the one map from a result state to an exit code.

Imports are at module level, but for three marked ``# lazy:``: each command's module is loaded
when it runs (so ``nbflow --help`` imports none of them), and ``nbflow run NOTEBOOK`` loads
neither the plan side (pydantic models, the scheduler) nor the cluster module, which a cold
notebook run would otherwise pay for.

Exit codes, for every command:

====  =========================================================================================
0     success: a notebook ``SUCCESS``; a plan or remote run ``SUCCESS`` or
      ``SUCCESS_WITH_FAILURES`` (its leaf tasks succeeded)
1     a notebook, plan or remote run ``FAILED`` or ``TIMEDOUT`` (or any other unsuccessful
      state a workspace reports); also a defect of nbflow's (``internal error``)
2     bad usage or bad input (:class:`~nbflow.errors.InputError`): nothing ran
3     the environment could not run the work (:class:`~nbflow.errors.EnvironmentFailure`:
      no kernel, a workspace that refused the call)
130   ``CANCELED``: interrupted by Ctrl-C, or a remote run cancelled in the workspace
143   ``CANCELED`` by SIGTERM (treated as Ctrl-C: runs are cancelled, their results written)
====  =========================================================================================
"""
