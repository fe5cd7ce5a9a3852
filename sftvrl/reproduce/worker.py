"""Execute one notebook with papermill, in a process of its own.

``reproduce`` starts ``python -m sftvrl.reproduce.worker SPEC_JSON`` per job, so that each job has
its own environment (thread counts, ``CUDA_VISIBLE_DEVICES``) for its kernel, and so that the
parent can measure the memory of the job's own processes (:mod:`.memory`). The
worker writes ``{"status": "ok"|"failed", "error": ...}`` to ``spec["result"]``; its stdout and
stderr (papermill's log of every cell's output) go to the job's log file.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["input"]`` into ``spec["output"]``; a failing cell becomes an error message."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    try:
        pm.execute_notebook(
            spec["input"],
            spec["output"],
            parameters=spec["parameters"],
            kernel_name=spec["kernel"],
            language="python",
            cwd=spec["cwd"],
            progress_bar=False,
            log_output=True,
            request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as error:
        evalue = str(error.evalue).strip().splitlines()
        message = f"{error.ename}: {evalue[-1] if evalue else ''}".rstrip(": ")
        return {"status": "failed", "error": f"{message} (cell {error.exec_count})"}
    except Exception as error:  # a kernel that died, a notebook that cannot be read, ...
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return {"status": "ok", "error": None}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process: ``python -m sftvrl.reproduce.worker SPEC_JSON``."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = execute(spec)
    path = Path(spec["result"])
    path.write_text(json.dumps(result))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main())
