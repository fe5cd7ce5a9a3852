"""``make reproduce``: run every notebook of the study with papermill and regenerate the figures.

``build_plan(tier, quick=...)`` lists the notebook jobs of a tier (``tiny``, ``gpu``, ``paper``);
``reproduce(...)`` runs them, resumably and in parallel where they are independent, writing the
executed notebooks to ``<out>/notebooks/`` and a report to ``<out>/reproduce_report.json``.

    from sftvrl.reproduce import reproduce
    report = reproduce("tiny", quick=True, out="build/quick")
    report.failed  # names of the jobs that raised
"""

from sftvrl.reproduce.kernel import KERNEL_NAME, KernelError, ensure_kernel
from sftvrl.reproduce.plan import NOTEBOOKS, SEEDS, SWEEPS, TASKS, TIERS, Job, build_plan
from sftvrl.reproduce.report import JobResult, ReproduceReport
from sftvrl.reproduce.runner import ReproduceError, notebook_parameters, reproduce

__all__ = [
    "KERNEL_NAME",
    "NOTEBOOKS",
    "SEEDS",
    "SWEEPS",
    "TASKS",
    "TIERS",
    "Job",
    "JobResult",
    "KernelError",
    "ReproduceError",
    "ReproduceReport",
    "build_plan",
    "ensure_kernel",
    "notebook_parameters",
    "reproduce",
]
