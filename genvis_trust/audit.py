"""audit: a folder through scan, streaming, resumable, with a summary report.

Every regular file below the folder (hidden files and the output folder excepted) gets
exactly one line in ``OUT/results.jsonl``: its scan result, or an error record naming the
problem. Lines are appended and flushed as results arrive; a line is one ``write`` so a
killed run leaves at most one partial line, which a rerun drops before resuming. A rerun
skips inputs already recorded, so interrupted and uninterrupted runs give the same set
of records. Memory stays constant: files are listed lazily and only the set of recorded
names is held.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from genvis_trust.io import atomic_write_text

RESULTS = "results.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_HTML = "report.html"


def iter_files(root: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Regular files below ``root`` in a stable order, lazily; hidden entries skipped."""
    root = root.resolve()
    ex = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (ex is None or Path(dirpath, d).resolve() != ex))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                continue  # never follow a link out of the audited tree
            yield p


def load_done(results: Path) -> set[str]:
    """Inputs already recorded; drops a partial last line left by a killed run."""
    if not results.exists():
        return set()
    raw = results.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(results, "r+b") as f:
            f.truncate(len(raw))
    done = set()
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.strip():
            try:
                done.add(json.loads(line)["input"])
            except (json.JSONDecodeError, KeyError):
                continue
    return done


def run_audit(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scanner=None,
    scanner_kwargs: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
    fsync_every: int = 64,
) -> dict[str, Any]:
    """Scan every file below ``root`` into ``out``; returns the summary dict."""
    from genvis_trust.scan import Scanner

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS
    done = load_done(results)
    todo = (p for p in iter_files(root, exclude=out) if _rel(p, root) not in done)
    own = scanner is None
    scanner = scanner or Scanner(**(scanner_kwargs or {}))
    t0 = time.time()

    def records():
        for res in scanner.scan(str(p) for p in todo):
            rec = res.to_dict()
            rec["input"] = _rel(Path(res.input), root)  # records name files relative to the root
            yield json.dumps(rec, sort_keys=True, default=str)
            if on_result is not None:
                on_result(rec)

    try:
        n_new = append_records(results, records(), fsync_every)
    finally:
        if own:
            scanner.close()
    summary = summarize(results, root=root, new=n_new, elapsed=time.time() - t0)
    write_summary(out, summary)
    return summary


def append_records(results: Path, lines: Iterator[str], fsync_every: int = 64) -> int:
    """Append JSON lines one ``write`` each, flushed as they come (a kill loses at most the
    line being written, which ``load_done`` drops); returns how many were written."""
    n = 0
    with open(results, "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
            fh.flush()
            n += 1
            if n % fsync_every == 0:
                os.fsync(fh.fileno())
        os.fsync(fh.fileno())
    return n


def _rel(p: Path, root: Path) -> str:
    return p.resolve().relative_to(root.resolve()).as_posix() if p.resolve().is_relative_to(root.resolve()) else p.as_posix()


def summarize(results: Path, *, root: Path | None = None, new: int = 0, elapsed: float = 0.0) -> dict[str, Any]:
    """Counts per verdict, per signal, per folder; score lists for histograms; the errors."""
    verdicts: Counter = Counter()
    signals: Counter = Counter()
    folders: dict[str, Counter] = {}
    scores: dict[str, list[float]] = {}
    errors: list[dict] = []
    n = 0
    with open(results, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            n += 1
            v = r["verdict"]
            verdicts[v] += 1
            folder = r["input"].split("/", 1)[0] if "/" in r["input"] else "."
            folders.setdefault(folder, Counter())[v] += 1
            for e in r.get("evidence", []):
                if e.get("indicates") not in (None, "none"):
                    signals[f"{e['kind']}:{e['indicates']}"] += 1
            if r.get("detector"):
                scores.setdefault(v, []).append(r["detector"]["probability"])
            if r.get("error"):
                errors.append({"input": r["input"], "code": r["error"].get("code"), "message": r["error"].get("message")})
    return {
        "root": str(root) if root else None,
        "records": n,
        "new_this_run": new,
        "elapsed_s": round(elapsed, 2),
        "verdicts": dict(verdicts),
        "signals": dict(signals),
        "folders": {k: dict(v) for k, v in sorted(folders.items())},
        "error_codes": dict(Counter(e["code"] for e in errors)),
        "errors": errors,
        "detector_scores": scores,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    from genvis_trust.report.html import audit_report_html

    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / SUMMARY_HTML, audit_report_html(summary, out))
