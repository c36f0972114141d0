"""`genvis-trust scan` and `genvis-trust audit`: the toolkit's main job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from .common import EXIT_PROBLEM, check_path, err, fail, friendly_errors, out, phase, progress

_VERDICT_STYLE = {
    "generated": "bold red",
    "likely_generated": "dark_orange",
    "uncertain": "yellow",
    "no_evidence": "green",
    "error": "dim",
    "skipped": "dim",
}

FAIL_ON = ("generated", "likely_generated", "tampered", "error")
FAIL_ON_HELP = ("Exit 3 when any record is one of these (comma-separated): generated (the generated "
                "verdict), likely_generated, tampered (an invalid C2PA manifest), error. For pipelines: "
                "--fail-on generated,tampered,error.")
INCLUDE_HELP = ("Only files matching this glob (repeatable); a pattern without '/' matches the file name, "
                "one with '/' the path below the folder.")
EXCLUDE_HELP = ("Leave out files and folders matching this glob (repeatable); a pattern without '/' matches "
                "any path component (--exclude cache drops every folder named cache).")
EXIT_FAIL_ON = 3


def _fail_on(value: str | None) -> set[str]:
    if not value:
        return set()
    wanted = {v.strip() for v in value.split(",") if v.strip()}
    bad = wanted - set(FAIL_ON)
    if bad:
        fail(f"--fail-on takes {', '.join(FAIL_ON)} (comma-separated); got {', '.join(sorted(bad))}", 2)
    return wanted


def _trips(rec: dict, wanted: set[str]) -> bool:
    """Whether a record is one the pipeline asked to fail on."""
    return rec["verdict"] in wanted or bool(wanted & set(rec.get("flags") or []))


def _scanner_kwargs(detector, device, store, trust_anchors, no_provenance, backends, workers, batch,
                    frames=16, scene_cuts=True, max_duration=1800.0, exact_stability=False):
    kw = dict(detector=detector, device=device, provenance=not no_provenance, store=store, trust_anchors=trust_anchors,
              workers=workers, batch_size=batch, video=video_options(frames, scene_cuts, max_duration),
              exact_stability=exact_stability)
    if backends:
        kw["watermark_backends"] = tuple(b.strip() for b in backends.split(",") if b.strip())
    return kw


def video_options(frames: int, scene_cuts: bool, max_duration: float):
    from genvis_trust.video import FrameSampling, VideoLimits, VideoOptions

    if frames < 1 or max_duration <= 0:
        fail("--frames must be at least 1 and --max-duration positive", 2)
    return VideoOptions(sampling=FrameSampling(frames=frames, scene_cuts=scene_cuts),
                        limits=VideoLimits(max_duration_s=max_duration))


FRAMES_HELP = "Video: frames examined, spread evenly (plus up to 8 at scene cuts)."
EXACT_HELP = ("Stability check: score every tile of each perturbed copy. Default on CPU: a copy's tiles are read 16 "
              "at a time (a batch at a time with --batch above 16, and on a GPU, whole) until its side of the threshold "
              "is clear (the same answers in every case measured, at a third of the tiles or fewer; the record says how "
              "many were read).")
CUTS_HELP = "Video: also examine the frames that open a new shot."
DURATION_HELP = "Video: longest video decoded, in seconds (checked before decoding; longer ones get an error record)."


def _expand(paths: list[Path], include: list[str] | None = None, exclude: list[str] | None = None,
            not_read: dict[str, int] | None = None) -> list[tuple[str, dict | None, dict | None]]:
    """(path to scan, link, ready record) per input: a folder gives one per entry below it
    (a record for an empty one too), its files that are not media a ``skipped`` record, the
    toolkit's own outputs none; a file named on the command line is always scanned (a
    missing one so that its record says so). ``not_read``: gains the folders' counts of own
    outputs (``own_outputs``) and of files the filter left out (``excluded``)."""
    from genvis_trust.audit import FolderWalk, problem_record, skipped_record
    from genvis_trust.triage import Filter

    flt = Filter(include or (), exclude or ())
    plan: list[tuple[str, dict | None, dict | None]] = []
    for p in paths:
        if not p.is_dir():
            plan.append((str(p), None, None))
            continue
        n = len(plan)
        walk = FolderWalk(p, filter=flt)
        for e, skip in walk:
            name = str(e.path)
            if e.error is not None:
                plan.append((name, e.link, {**problem_record(e), "input": name}))
            elif skip is not None:
                plan.append((name, e.link, {**skipped_record(e, *skip), "input": name}))
            else:
                plan.append((name, e.link, None))
        if not_read is not None:
            c = walk.counts()
            for k in ("own_outputs", "excluded"):
                not_read[k] = not_read.get(k, 0) + int(c.get(k) or 0)
        if len(plan) == n:
            from genvis_trust.scan import ScanResult

            msg = "folder holds no files to scan (hidden files, the toolkit's own outputs and filtered-out files are skipped)"
            plan.append((str(p), None, ScanResult(str(p), "error", f"error: {msg} [empty]",
                                                   error={"code": "empty", "message": msg, "path": str(p)}).to_dict()))
    return plan


def _in_order(scanner, plan):
    """Results in the order of ``plan``: problem records as they are, the rest scanned."""
    scanned = scanner.scan(name for name, _, problem in plan if problem is None)
    for _name, link, problem in plan:
        if problem is not None:
            yield problem, None  # already names its link
            continue
        res = next(scanned)
        yield res, link


def scan_cmd(
    paths: list[Path] = typer.Argument(..., help="Image files (folders are expanded recursively; for big folders use `audit`)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON record per image on stdout (JSON Lines; schema in the README)."),
    html_out: Path | None = typer.Option(None, "--html", help="Also write an HTML report: image, evidence, heat map, spectrum."),
    detector: str = typer.Option("default", help="Detector: a bundled or installed name (`detectors list`; install with `detectors fetch NAME`) or an artifact folder."),
    store: Path | None = typer.Option(None, help="Provenance store (SQLite) to look records up in."),
    trust_anchors: Path | None = typer.Option(None, help="PEM file of trusted C2PA root certificates."),
    backends: str | None = typer.Option(None, help="Watermark backends to read, comma-separated (default dwtDctSvd,dwtDct; 'all' adds rivaGan)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Detector only: skip C2PA, metadata and watermark checks."),
    full: bool = typer.Option(False, help="With --json: include the full provenance report of each image."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    workers: int | None = typer.Option(None, help="Decode threads (default: half the cores, at least 1)."),
    batch: int | None = typer.Option(None, help="Detector tiles per forward pass (default 16 on CPU, 1024 on CUDA)."),
    frames: int = typer.Option(16, "--frames", help=FRAMES_HELP),
    scene_cuts: bool = typer.Option(True, "--scene-cuts/--no-scene-cuts", help=CUTS_HELP),
    max_duration: float = typer.Option(1800.0, "--max-duration", help=DURATION_HELP),
    include: list[str] = typer.Option(None, "--include", help=INCLUDE_HELP),
    exclude: list[str] = typer.Option(None, "--exclude", help=EXCLUDE_HELP),
    fail_on: str | None = typer.Option(None, "--fail-on", help=FAIL_ON_HELP),
    exact_stability: bool = typer.Option(False, "--exact-stability", help=EXACT_HELP),
):
    """Scan images and videos: every signal fused into one verdict per file, with its evidence.

    A video is one record: C2PA and metadata read on the container, every image signal on
    sampled frames (evenly spread plus scene cuts), per-frame evidence with timestamps.

    Signals: C2PA manifests, metadata markers, watermarks (ours and known generators'),
    the provenance store, and the detector. Never claims "real". A C2PA manifest that is
    present but invalid puts TAMPERED in front of the verdict (JSON: "flags": ["tampered"]).

    In a folder, files that are not media (keys, databases, HTML, JSON, text, archives,
    programs) get a "skipped" record with the reason; the toolkit's own outputs (audit
    folders, provenance stores, key folders) are not read at all.

    Exit codes: 0 every input scanned; 1 some inputs could not be read (their records say
    why); 3 --fail-on matched a record (checked first).

    Examples:

        genvis-trust scan photo.jpg

        genvis-trust scan incoming/ --json --fail-on generated,tampered,error > records.jsonl
    """
    from rich.markup import escape

    from genvis_trust.artifacts import ArtifactError
    from genvis_trust.datasets.folders import display_name
    from genvis_trust.scan import Scanner

    wanted = _fail_on(fail_on)
    not_read: dict[str, int] = {}
    with phase("listing files"):
        plan = _expand(paths, include, exclude, not_read)
    if not plan:
        fail("no files to scan", 2)
    with friendly_errors(ArtifactError, FileNotFoundError, ValueError), phase("loading the detector"):
        scanner = Scanner(**_scanner_kwargs(detector, device, store, trust_anchors, no_provenance, backends, workers, batch,
                                            frames, scene_cuts, max_duration, exact_stability))
    results = []
    n_err = n_trip = 0
    try:
        with progress() as bar:
            task = bar.add_task("scan", total=len(plan))
            for res, link in _in_order(scanner, plan):
                rec = res if isinstance(res, dict) else res.to_dict(full=full or html_out is not None)
                if link is not None:
                    rec["link"] = link
                n_err += rec["verdict"] == "error"
                n_trip += _trips(rec, wanted)
                if json_out:
                    shown = rec if full or "provenance" not in rec else {k: v for k, v in rec.items() if k != "provenance"}
                    sys.stdout.write(json.dumps(shown, sort_keys=True, default=str) + "\n")
                    sys.stdout.flush()
                results.append(rec)
                bar.advance(task)
    finally:
        scanner.close()
    if not json_out:
        t = Table(show_lines=False)
        for c in ("file", "verdict", "evidence"):
            t.add_column(c, overflow="fold")
        for r in results:
            strong = [e["summary"] for e in r["evidence"] if e.get("indicates") not in (None, "none")]
            style = "bold red" if r.get("flags") else _VERDICT_STYLE[r["verdict"]]
            t.add_row(escape(display_name(r["input"])), f"[{style}]{escape(display_name(r['summary']))}[/]",
                      escape(display_name("; ".join(strong[:2]))) or "-")
        out.print(t)
    if html_out is not None:
        _write_scan_html(html_out, results, scanner.detector)
        err.print(f"HTML report: {html_out}")
    if not_read.get("own_outputs") or not_read.get("excluded"):  # on stderr: --json keeps stdout to records
        err.print(f"not read: {not_read.get('own_outputs', 0)} of the toolkit's own outputs, "
                  f"{not_read.get('excluded', 0)} left out by --include/--exclude")
    if n_err:
        err.print(f"[yellow]{n_err} of {len(plan)} input(s) could not be scanned; their records say why[/]")
    if n_trip:
        err.print(f"[red]{n_trip} of {len(plan)} record(s) matched --fail-on {fail_on}[/]")
        raise typer.Exit(EXIT_FAIL_ON)
    if n_err:
        raise typer.Exit(EXIT_PROBLEM)


def _write_scan_html(path: Path, results: list[dict], detector, limit: int = 200) -> None:
    from genvis_trust.atomic import atomic_write_text
    from genvis_trust.io import ImageLoadError, load_image
    from genvis_trust.report.html import (
        draw_boxes,
        heat_map,
        local_boxes,
        scan_report_html,
        spectrum_image,
        thumbnail,
    )

    items = []
    shown = results[:limit]
    with progress() as bar:  # a heat map and a spectrum per image: seconds, not instant
        task = bar.add_task("HTML report", total=len(shown))
        for r in shown:
            pics = {}
            if r.get("video"):
                from genvis_trust.report.plots import video_timeline

                pics["frames over time"] = video_timeline(r["video"], flags=r.get("flags"))
            elif r["verdict"] != "error":
                try:
                    img = load_image(r["input"]).array
                    boxes = local_boxes(r.get("detector"))  # faces and a region that stands out
                    pics["image"] = draw_boxes(thumbnail(img), boxes, img.shape)
                    if not getattr(detector, "whole_image", False):  # a published detector has no tile map
                        pics["heat"] = heat_map(detector, img)
                        pics["heat"]["picture"] = draw_boxes(pics["heat"]["picture"], boxes, img.shape)
                    pics["spectrum"] = spectrum_image(img)
                except (ImageLoadError, ValueError):
                    pass
            items.append((r, pics))
            bar.advance(task)
    atomic_write_text(path, scan_report_html(items))
    if len(results) > limit:
        err.print(f"[yellow]the HTML report shows the first {limit} of {len(results)} images[/]")


def audit_cmd(
    folder: Path = typer.Argument(..., help="Folder to audit (recursively; every file gets one record)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: results.jsonl, summary.json, report.html, charts."),
    detector: str = typer.Option("default", help="Detector: a bundled or installed name (`detectors list`; install with `detectors fetch NAME`) or an artifact folder."),
    store: Path | None = typer.Option(None, help="Provenance store (SQLite) to look records up in."),
    trust_anchors: Path | None = typer.Option(None, help="PEM file of trusted C2PA root certificates."),
    backends: str | None = typer.Option(None, help="Watermark backends, comma-separated (default dwtDctSvd,dwtDct)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Detector only."),
    engine: str = typer.Option("local", help="local (threads + batches on this machine) or ray (Ray Data; needs the ray extra)."),
    heatmaps: int = typer.Option(200, help="How many files get a detector heat map in the report (the highest-scoring ones; each costs a detector pass)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workers: int | None = typer.Option(None, help="Decode threads."),
    batch: int | None = typer.Option(None, help="Detector tiles per forward pass (default 16 on CPU, 1024 on CUDA)."),
    frames: int = typer.Option(16, "--frames", help=FRAMES_HELP),
    scene_cuts: bool = typer.Option(True, "--scene-cuts/--no-scene-cuts", help=CUTS_HELP),
    max_duration: float = typer.Option(1800.0, "--max-duration", help=DURATION_HELP),
    include: list[str] = typer.Option(None, "--include", help=INCLUDE_HELP),
    exclude: list[str] = typer.Option(None, "--exclude", help=EXCLUDE_HELP),
    fail_on: str | None = typer.Option(None, "--fail-on", help=FAIL_ON_HELP),
    exact_stability: bool = typer.Option(False, "--exact-stability", help=EXACT_HELP),
):
    """Audit a folder: every file through scan (videos as one record each), resumable, with a summary report.

    Records are appended to OUT/results.jsonl as they come; rerun the same command after an
    interruption to resume. Writes OUT/summary.json and OUT/report.html.

    Files that are not media (keys, databases, HTML, JSON, text, archives, programs) are
    recorded as "skipped" with the reason and counted apart. The toolkit's own outputs
    (earlier audits' folders wherever they sit, provenance stores and their -wal/-shm
    files, key folders) are never read or recorded; the summary counts them.

    Exit codes: 0 done; 1 done, but some files could not be scanned (listed in the report);
    3 --fail-on matched a record (checked first).

    Examples:

        genvis-trust audit incoming/ --out audit-incoming

        genvis-trust audit incoming/ --out audit-incoming --exclude '*.tmp' --fail-on generated,tampered,error
    """
    from genvis_trust.artifacts import ArtifactError
    from genvis_trust.audit import RESULTS, SUMMARY_HTML, FolderWalk, load_done, run_audit
    from genvis_trust.triage import Filter

    check_path(folder, "folder", "folder to audit",
               f"for one file use `genvis-trust scan {folder}`" if folder.is_file() else "")
    wanted = _fail_on(fail_on)
    kwargs = _scanner_kwargs(detector, device, store, trust_anchors, no_provenance, backends, workers, batch,
                             frames, scene_cuts, max_duration, exact_stability)
    done = len(load_done(out_dir / RESULTS))
    with phase("listing files"):  # the same walk the audit makes; corrected as files come and go
        total = sum(1 for _ in FolderWalk(folder, exclude=out_dir, filter=Filter(include or (), exclude or ())))
    if done:
        err.print(f"resuming: {done} file(s) already recorded in {out_dir / RESULTS}")
    with friendly_errors(ArtifactError, FileNotFoundError, ValueError):
        if engine == "ray":
            from genvis_trust.ray_engine import run_audit_ray

            summary = run_audit_ray(folder, out_dir, scanner_kwargs=kwargs, include=include or (), exclude=exclude or ())
        elif engine == "local":
            with progress() as bar:
                task = bar.add_task("audit", total=total, completed=min(done, total))
                pages = bar.add_task("report", total=None, visible=False, start=False)

                def on_report(k: int, n: int) -> None:
                    if k == 0:  # its clock starts with the report, not with the audit
                        bar.start_task(pages)
                    bar.update(pages, completed=k, total=n, visible=True)

                seen = [min(done, total)]

                def on_result(rec: dict) -> None:
                    seen[0] += 1  # a file that appeared since the listing raises the total
                    bar.update(task, completed=seen[0], total=max(total, seen[0]))

                summary = run_audit(folder, out_dir, scanner_kwargs=kwargs, heatmaps=heatmaps,
                                    on_result=on_result, on_report=on_report,
                                    include=include or (), exclude=exclude or ())
                bar.update(task, total=seen[0])  # the total shown is the total recorded
        else:
            fail(f"--engine must be local or ray, got {engine!r}", 2)
    v = ", ".join(f"{k} {n}" for k, n in sorted(summary["verdicts"].items()) if k != "skipped")
    out.print(f"{summary['records']} records ({v}); {summary['new_this_run']} new, scanned in {summary['elapsed_s']:.1f}s")
    if summary.get("flags", {}).get("tampered"):
        out.print(f"[red]TAMPERED: {summary['flags']['tampered']} file(s) carry an invalid C2PA manifest[/]")
    if summary.get("skipped"):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary["skipped"].items()))
        out.print(f"skipped (not media): {summary['verdicts'].get('skipped', 0)} ({kinds})")
    nr = summary.get("not_recorded") or {}
    if nr.get("own_outputs") or nr.get("excluded"):
        out.print(f"not read: {nr.get('own_outputs', 0)} of the toolkit's own outputs, "
                  f"{nr.get('excluded', 0)} left out by --include/--exclude")
    out.print(f"report: {out_dir / SUMMARY_HTML}")
    if summary["errors"]:
        err.print(f"[yellow]{len(summary['errors'])} file(s) could not be scanned: see the report's error list[/]")
    tripped = 0
    if wanted:
        with open(out_dir / RESULTS, encoding="utf-8") as f:
            tripped = sum(_trips(json.loads(line), wanted) for line in f if line.strip())
    if tripped:
        err.print(f"[red]{tripped} record(s) matched --fail-on {fail_on}[/]")
        raise typer.Exit(EXIT_FAIL_ON)
    if summary["errors"]:
        raise typer.Exit(EXIT_PROBLEM)
