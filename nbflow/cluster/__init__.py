"""The local cluster: one Spark Connect server per project, that every notebook kernel attaches to.

A Databricks all-purpose cluster is one Spark driver that many notebooks share; nbflow mirrors it
with one Spark Connect server per project, bound to 127.0.0.1, started on demand, detached from
whoever started it, and reused until ``stop``. Its files are under ``<project>/.nbflow/cluster``
(see :mod:`nbflow.project`). The parts, each importable alone (this file imports none of them):

- :mod:`~nbflow.cluster.engines`: which cluster engine runs (``sail``, ``spark`` with or without
  Delta's jars, an external ``sc://`` endpoint, or ``auto``), decided from local files only;
- :mod:`~nbflow.cluster.state`: the running cluster as recorded (:class:`ClusterState`), its
  state file, token, lock and event log;
- :mod:`~nbflow.cluster.commands`: the command lines and environments that start each engine's
  server (Sail's catalogs, the JVM's spark-submit, the gate);
- :mod:`~nbflow.cluster.processes`: the servers as processes: found by their command lines,
  alive or not, stopped;
- :mod:`~nbflow.cluster.server`: start, stop, status (the public life cycle);
- :mod:`~nbflow.cluster.attach`: a Spark Connect session on the running cluster;
- :mod:`~nbflow.cluster.gate`: ``python -m nbflow.cluster.gate``, the process that guards Sail.
"""
