"""Plans: jobs of notebook tasks, loaded from YAML or JSON and validated before anything runs.

- :mod:`.model`: the pydantic models (:class:`Plan`, :class:`Task`, parameters, schedule, cluster);
- :mod:`.loading`: reading a plan file, every problem as ``FILE:LINE: field.path: message``;
- :mod:`.jobs_api`: a job in the Jobs API's shape as a plan (a plan file, or a job ``nbflow serve`` is sent);
- :mod:`.checks`: the checks that need the whole plan (keys, dependencies, notebooks), and the wording;
- :mod:`.references`: ``{{job.*}}`` / ``{{tasks.*}}`` references, checked and evaluated.

The names below are the ones the rest of nbflow imports. Submodules import each other, never
this package, so importing one of them has no cycle through here.
"""

from ..errors import PlanError
from .jobs_api import from_jobs_api, plan_from_job
from .loading import check_plan, load_plan
from .model import RUN_IF, Cluster, JobParameter, Plan, RunIf, Schedule, Task
from .references import REFERENCE, reference_problems, resolve

__all__ = [
    "REFERENCE", "RUN_IF", "Cluster", "JobParameter", "Plan", "PlanError", "RunIf", "Schedule", "Task",
    "check_plan", "from_jobs_api", "load_plan", "plan_from_job", "reference_problems", "resolve",
]
