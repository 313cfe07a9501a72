"""``nbflow serve``: a local Databricks workspace on 127.0.0.1 that answers the REST API (the
Workspace, Clusters and Jobs APIs) the way a real workspace does, so ``databricks-sdk`` works
against it unchanged. The client side (the SDK adapter) is :mod:`nbflow.remote`."""
