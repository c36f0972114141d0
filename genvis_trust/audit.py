"""audit: a folder through scan, streaming, resumable, with a summary report.

Every entry below the folder gets exactly one line in ``OUT/results.jsonl``, under its own
path: its scan result, a ``skipped`` record for a file that is not media (PEM, SQLite,
HTML, JSON, text, archive, executable: told by content, :mod:`genvis_trust.triage`), or an
error record naming the problem (a link loop, a link out of the tree, a FIFO, an
unreadable folder). Not recorded, and counted apart in the summary: hidden entries, the
toolkit's own outputs wherever they sit (audit folders, report pages, provenance stores
and their ``-wal``/``-shm`` files, key folders), and what ``include``/``exclude`` leave
out. A file that vanishes between the listing and its reading is recorded as skipped. A
symbolic link to a file the walk records under its own name gets a record of its own that
repeats that file's scan (scanned once) and names the target (``link``); folder links are
never followed, so nothing is walked twice. Lines are appended and flushed as results arrive; a line is one ``write`` so a
killed run leaves at most one partial line, which a rerun drops before resuming. A rerun
skips inputs already recorded, so interrupted and uninterrupted runs give the same set
of records. Memory stays constant: files are listed lazily and only the set of recorded
names is held.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from genvis_trust.atomic import atomic_write_text
from genvis_trust.datasets.folders import Entry, walk_entries
from genvis_trust.triage import (
    AUDIT_MARK,
    HEAD_BYTES,
    Filter,
    not_media,
    own_output,
    own_output_folder,
)

RESULTS = "results.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_HTML = "report.html"


def iter_entries(root: Path, exclude: Path | None = None) -> Iterator[Entry]:
    """Every entry below ``root``, once, under its own path (see :class:`FolderWalk` for
    what an audit records of them)."""
    return walk_entries(root, exclude=exclude)


class FolderWalk:
    """What an audit or ``scan DIR`` records below ``root``: ``(entry, skip)`` pairs, where
    ``skip`` is ``(code, reason)`` for a file that is not media (recorded as ``skipped``) and
    None for an entry to scan (or a problem entry, whose ``error`` is set). The toolkit's own
    outputs and what the filter leaves out are not yielded; ``own`` and ``excluded`` count
    them (``own_examples``: the first few, with the reason)."""

    def __init__(self, root: str | os.PathLike, *, exclude: str | os.PathLike | None = None,
                 filter: Filter | None = None):
        self.root = Path(root)
        self.exclude = exclude
        self.filter = filter or Filter()
        self.own: Counter = Counter()
        self.own_examples: list[dict[str, str]] = []
        self.excluded = 0

    def _drop_own(self, rel: str, why: str) -> None:
        self.own[why] += 1
        if len(self.own_examples) < 20:
            self.own_examples.append({"path": rel, "why": why})

    def _prune(self, path: Path, rel: str) -> bool:
        if not self.filter.wants_folder(rel):
            self.excluded += 1
            return True
        why = own_output_folder(path)
        if why is not None:
            self._drop_own(rel + "/", why)
            return True
        return False

    def __iter__(self) -> Iterator[tuple[Entry, tuple[str, str] | None]]:
        for entry in walk_entries(self.root, exclude=self.exclude, prune=self._prune):
            if not self.filter.wants_file(entry.rel):
                self.excluded += 1
                continue
            if entry.error is not None:
                yield entry, None
                continue
            try:
                with open(entry.path, "rb") as f:
                    head = f.read(HEAD_BYTES)
            except FileNotFoundError:
                yield entry, ("vanished", "listed, then gone before it was read (removed during the walk)")
                continue
            except OSError:
                yield entry, None  # the scanner's record says what is wrong
                continue
            why = own_output(entry.path, head)
            if why is not None:
                self._drop_own(entry.rel, why)
                continue
            yield entry, not_media(head, entry.path.name, entry.path)

    def counts(self) -> dict[str, Any]:
        return {"own_outputs": sum(self.own.values()), "own_output_kinds": dict(self.own),
                "own_output_examples": list(self.own_examples), "excluded": self.excluded}


def skipped_record(entry: Entry, code: str, message: str) -> dict[str, Any]:
    """The record of a file that is not media (or vanished): verdict ``skipped``, the reason."""
    from genvis_trust.scan import ScanResult

    try:
        size = os.stat(entry.path).st_size
    except OSError:
        size = None
    rec = ScanResult(entry.rel, "skipped", f"skipped: {message}", image={"bytes": size} if size is not None else {},
                     skipped={"code": code, "message": message}).to_dict()
    return with_link(rec, entry)


def problem_record(entry: Entry) -> dict[str, Any]:
    """The record of an entry that is not opened (a loop, a FIFO, a link out of the tree...)."""
    from genvis_trust.scan import ScanResult

    e = entry.error
    rec = ScanResult(entry.rel, "error", f"error: {e['message']} [{e['code']}]", error=dict(e)).to_dict()
    return with_link(rec, entry)


def with_link(rec: dict[str, Any], entry: Entry) -> dict[str, Any]:
    """Name the record by the entry's own path; a link says so and names its target."""
    rec["input"] = entry.rel
    if entry.link is not None:
        rec["link"] = entry.link
    return rec


def target_recorded_itself(entry: Entry, out_rel: str | None) -> bool:
    """Whether a link points at a file the same walk records under its own name (so the
    link's record can repeat that scan instead of scanning the file again)."""
    link = entry.link
    if entry.error is not None or not link or not link.get("inside"):
        return False
    target = link["target"]
    if any(part.startswith(".") for part in target.split("/")):
        return False  # hidden: the walk skips it
    return out_rel is None or not (target == out_rel or target.startswith(out_rel + "/"))


def link_records(results: Path, links: list[Entry]) -> Iterator[dict[str, Any]]:
    """For each link, its target's record under the link's name (the file is scanned once);
    an error record if the target has none (it vanished during the run)."""
    wanted = {e.link["target"] for e in links}
    found: dict[str, dict] = {}
    with open(results, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r["input"] in wanted and "link" not in r:
                    found[r["input"]] = r
    for e in links:
        target = e.link["target"]
        if target in found:
            yield with_link(dict(found[target]), e)
        else:
            msg = f"a symbolic link to {target}, which was not recorded in this audit"
            yield problem_record(Entry(e.path, e.rel, e.link, {"code": "not_found", "message": msg, "path": str(e.path)}))


def rel_inside(path: Path, root: Path) -> str | None:
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    return None if rel == ".." or rel.startswith("../") else Path(rel).as_posix()


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
    on_report: Callable[[int, int], None] | None = None,
    heatmaps: int = 200,
    fsync_every: int = 64,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Scan every file below ``root`` into ``out``; returns the summary dict.

    ``include`` / ``exclude``: globs on the path below ``root`` (see :class:`~genvis_trust.triage.Filter`).

    ``on_result`` is called with each new record, ``on_report`` with (pages done, total)
    while the report is written; ``heatmaps``: how many files get a heat map in the report.
    The summary's ``elapsed_s`` is this call's wall time up to the report (models loaded
    and files scanned), the figure the CLI and the report both show.
    """
    from genvis_trust.scan import Scanner

    t_start = time.time()
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    mark = out / AUDIT_MARK  # so any later walk knows this folder for an audit's output
    if not mark.exists():
        atomic_write_text(mark, "written by `genvis-trust audit`: its results and report; never audited itself\n")
    results = out / RESULTS
    done = load_done(results)
    own = scanner is None
    scanner = scanner or Scanner(**(scanner_kwargs or {}))
    from genvis_trust.report.audit_report import REPORT_DIR, pictures_from_pixels

    # the report's pictures from the pixels the scan decodes anyway: the report reads no image again
    pages = out / REPORT_DIR
    before, scanner.on_decoded = getattr(scanner, "on_decoded", None), (
        lambda res, arr: pictures_from_pixels(pages, res.to_dict(), arr))
    t0 = time.time()
    # Entries that are not opened become records without the scanner; they wait here until
    # the scanner, which reads ahead, has returned what was queued before them.
    in_flight: dict[str, Entry] = {}
    problems: deque[dict] = deque()
    links: list[Entry] = []  # links to files recorded under their own names: recorded last
    out_rel = rel_inside(out, root)
    walk = FolderWalk(root, exclude=out, filter=Filter(include, exclude))

    def to_scan():
        for entry, skip in walk:
            if entry.rel in done:
                continue
            if entry.error is not None:
                problems.append(problem_record(entry))
            elif skip is not None:
                problems.append(skipped_record(entry, *skip))
            elif target_recorded_itself(entry, out_rel):
                links.append(entry)
            else:
                in_flight[str(entry.path)] = entry
                yield str(entry.path)

    def emit(rec):
        if on_result is not None:
            on_result(rec)
        return json.dumps(rec, sort_keys=True, default=str)

    def records():
        for res in scanner.scan(to_scan()):
            while problems:
                yield emit(problems.popleft())
            entry = in_flight.pop(res.input)
            if (res.error or {}).get("code") == "not_found" and not os.path.lexists(entry.path):
                yield emit(skipped_record(entry, "vanished", "listed, then gone before it was read (removed during the walk)"))
                continue
            yield emit(with_link(res.to_dict(), entry))
        while problems:
            yield emit(problems.popleft())
        if links:
            yield from (emit(rec) for rec in link_records(results, links))

    try:
        n_new = append_records(results, records(), fsync_every)
        t_end = time.time()
        summary = summarize(results, root=root, new=n_new, elapsed=t_end - t_start,
                            timings={"load_s": t0 - t_start, "scan_s": t_end - t0})
        summary["not_recorded"] = walk.counts()
        write_summary(out, summary, detector=scanner.detector, heatmaps=heatmaps, on_progress=on_report)
    finally:
        scanner.on_decoded = before
        if own:
            scanner.close()
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


def summarize(results: Path, *, root: Path | None = None, new: int = 0, elapsed: float = 0.0,
              timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Counts per verdict, per signal, per folder; score lists for histograms; the errors."""
    verdicts: Counter = Counter()
    signals: Counter = Counter()
    folders: dict[str, Counter] = {}
    scores: dict[str, list[float]] = {}
    errors: list[dict] = []
    skipped: Counter = Counter()
    flags: Counter = Counter()
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
            for fl in r.get("flags") or []:
                flags[fl] += 1
            if v == "skipped":
                skipped[(r.get("skipped") or {}).get("code") or "other"] += 1
            if r.get("error"):
                errors.append({"input": r["input"], "code": r["error"].get("code"), "message": r["error"].get("message")})
    return {
        "root": str(root) if root else None,
        "records": n,
        "new_this_run": new,
        "elapsed_s": round(elapsed, 2),
        **{k: round(v, 2) for k, v in (timings or {"load_s": 0.0, "scan_s": elapsed}).items()},
        "verdicts": dict(verdicts),
        "flags": dict(flags),
        "skipped": dict(skipped),
        "signals": dict(signals),
        "folders": {k: dict(v) for k, v in sorted(folders.items())},
        "error_codes": dict(Counter(e["code"] for e in errors)),
        "errors": errors,
        "detector_scores": scores,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_summary(out: Path, summary: dict[str, Any], *, detector=None, heatmaps: int = 200,
                  on_progress: Callable[[int, int], None] | None = None) -> None:
    """``summary.json`` and ``report.html`` (with a page per file under ``report/``);
    ``detector`` draws heat maps for the ``heatmaps`` highest-scoring files."""
    from genvis_trust.report.audit_report import audit_report_html

    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    root = Path(summary["root"]) if summary.get("root") else None
    atomic_write_text(out / SUMMARY_HTML, audit_report_html(summary, out, root=root, detector=detector,
                                                            heatmaps=heatmaps, on_progress=on_progress))
