"""Databricks workspaces: the remote adapter (official ``databricks-sdk``) and ``nbflow serve``,
a local workspace that answers the same REST calls."""
