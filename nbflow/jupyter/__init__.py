"""nbflow in Jupyter's server: Databricks source notebooks opened as notebooks (:mod:`.contents`),
and ``nbflow lab`` (:mod:`.lab`), JupyterLab for a project. Needs the ``jupyter`` extra
(``pip install 'nbflow[jupyter]'``); the rest of nbflow does not import this package."""
