"""Scale-out: the same scan on Ray Data, for folders that outgrow one machine.

Each Ray actor builds one :class:`~genvis_trust.scan.Scanner` (so the detector is loaded
once per actor, not per batch) and scans batches of paths with it; the driver streams
results into ``results.jsonl`` exactly as the local audit does, so resume, the summary and
the report are shared. Actors ask for one GPU each when the cluster has GPUs.

To use a cluster, start Ray there (``ray start --head`` on one node, ``ray start
--address=HEAD:6379`` on the others), make the audited folder visible at the same path on
every node (a shared file system), and pass ``address="auto"`` (CLI: set
``RAY_ADDRESS=auto`` before ``genvis-trust audit --engine ray``). Without an address a
local Ray instance is started on this machine.

Python entry point::

    from genvis_trust.ray_engine import run_audit_ray
    summary = run_audit_ray("photos/", "out/", scanner_kwargs={"detector": "default"})
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from genvis_trust.audit import (
    RESULTS,
    FolderWalk,
    append_records,
    link_records,
    load_done,
    problem_record,
    rel_inside,
    skipped_record,
    summarize,
    target_recorded_itself,
    write_summary,
)
from genvis_trust.triage import Filter


class _ScanActor:
    """Ray Data callable class: one Scanner per actor, reused for every batch."""

    def __init__(self, scanner_kwargs: dict[str, Any]):
        from genvis_trust.scan import Scanner

        self.scanner = Scanner(**scanner_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        records = []
        for name, link, res in zip(batch["name"], batch["link"], self.scanner.scan(paths), strict=True):
            rec = res.to_dict()
            rec["input"] = str(name)
            if link:
                rec["link"] = json.loads(link)
            records.append(json.dumps(rec, sort_keys=True, default=str))
        return {"record": np.array(records, dtype=object)}


def run_audit_ray(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scanner_kwargs: dict[str, Any] | None = None,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 32,
    num_cpus_per_actor: float = 1.0,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Audit ``root`` into ``out`` with Ray Data; same outputs, resume rules and
    ``include``/``exclude`` globs as ``run_audit``."""
    import ray

    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS
    done = load_done(results)
    items, problems, links = [], [], []
    out_rel = rel_inside(out, root)
    # own outputs and what the filter leaves out not walked, non-media recorded as skipped
    walk = FolderWalk(root, exclude=out, filter=Filter(include, exclude))
    for entry, skip in walk:
        if entry.rel in done:
            continue
        if entry.error is not None:  # never opened, so no actor needed
            problems.append(json.dumps(problem_record(entry), sort_keys=True, default=str))
        elif skip is not None:
            problems.append(json.dumps(skipped_record(entry, *skip), sort_keys=True, default=str))
        elif target_recorded_itself(entry, out_rel):  # repeats its target's record, afterwards
            links.append(entry)
        else:
            items.append({"path": str(entry.path), "name": entry.rel, "link": json.dumps(entry.link) if entry.link else ""})
    started = False
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
        started = True
    t0 = time.time()
    n_new = append_records(results, iter(problems))
    try:
        if items:
            gpus = float(ray.cluster_resources().get("GPU", 0))
            kwargs = dict(scanner_kwargs or {})
            n_actors = actors or max(1, int(gpus) if gpus else int(ray.cluster_resources().get("CPU", 1) // max(num_cpus_per_actor, 1)))
            ds = ray.data.from_items(items).map_batches(
                _ScanActor,
                fn_constructor_kwargs={"scanner_kwargs": kwargs},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=n_actors),
                num_gpus=1 if gpus else 0,
                num_cpus=num_cpus_per_actor,
            )
            n_new += append_records(results, (row["record"] for row in ds.iter_rows()))
        if links:
            n_new += append_records(results, (json.dumps(r, sort_keys=True, default=str) for r in link_records(results, links)))
    finally:
        if started:
            ray.shutdown()
    summary = summarize(results, root=root, new=n_new, elapsed=time.time() - t0)
    summary["not_recorded"] = walk.counts()
    write_summary(out, summary)
    return summary
