"""Databricks workspaces, client side: the adapter over the official ``databricks-sdk``. The
local workspace that answers the same REST calls, ``nbflow serve``, is :mod:`nbflow.serve`."""
