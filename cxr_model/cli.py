"""`cxr <step>`: the command line that dvc.yaml stages (and people) run; plus `cxr predict`,
`cxr card` and `cxr assess` for using a registered model; `cxr champion` to promote one by hand; `cxr stack`
for the team servers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cxr_model.config import Config, load_config
from cxr_model.errors import CxrError

# The pipeline steps in flow order, with what each leaves behind (the `cxr --help` lines).
STEP_HELP = {
    "import-data": "bring the landing folder in as a DVC dataset version (a no-op when nothing changed)",
    "ingest": "scan the images into artifacts/ingest/manifest.csv, with the duplicate report",
    "validate": "decode every image once and run the Great Expectations suite; exit 1 on a critical rule",
    "profile": "class counts, size and intensity histograms and sample grids per split",
    "train": "fit the CNN on the cached arrays: artifacts/train/model.keras, history, curves",
    "evaluate": "threshold on validation, then test metrics, plots and shortcut probes",
    "register": "one MLflow run and a new version of the registered model",
    "promote": "move the champion alias to the new version if it passes the gates",
}
STEP_NAMES = tuple(STEP_HELP)


def setup_logging(verbose: bool = False) -> None:
    """Timestamped progress lines on stderr for the cxr loggers."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def _load_predictor(cfg: Config, model: str | None, threshold: float | None):
    from cxr_model import serving, tracking

    tracking.client(cfg)  # bind MLflow to this project's store before resolving models:/ URIs
    uri = serving.resolve_uri(model, cfg.mlflow.registered_model)
    settings = {"max_pixels": cfg.data.max_image_pixels, "predict": cfg.predict}
    try:
        return serving.load_predictor(uri, threshold, settings)
    except Exception as exc:  # MLflow raises many types for a missing model or alias
        hint = " (no champion yet: run `make run` first, or pass --model)" if model is None else ""
        raise CxrError(f"cannot load model {uri}: {str(exc).splitlines()[0]}{hint}") from None


def _print_against(against: dict) -> None:
    from cxr_model.evaluation import describe

    m, d = against["metrics"], against["auc_difference"]
    at = (f"its threshold {m['threshold']:.3f}" if against.get("threshold_stored")
          else f"the threshold given, {m['threshold']:.3f}" if against.get("threshold_given")
          else f"{m['threshold']:.3f} (a bare model file stores no threshold: give one with --against-threshold)")
    print(f"  against {against['model']}, on the same {against['films']} films, at {at}: {describe(m)}")
    verdict = ("the two cannot be told apart on these films" if d["low"] <= 0 <= d["high"]
               else f"{'this model' if d['difference'] > 0 else 'that one'} ranks these films better")
    print(f"  AUC, this model minus that one: {d['difference']:+.4f} ({d['low']:+.4f} to {d['high']:+.4f}, "
          f"the same patients redrawn for both): {verdict}")
    rates = against.get("rate_differences", {})
    print("  at each model's threshold, this model minus that one: " + ", ".join(
        f"{name} {r['difference']:+.3f} ({r['low']:+.3f} to {r['high']:+.3f})" for name, r in rates.items()))


def predict(cfg: Config, args: argparse.Namespace) -> int:
    """Score files and folders; a per-file reason for anything that cannot be scored."""
    from cxr_model import images, prediction

    files, missing, passed_over = prediction.collect_inputs(args.paths)
    for path in missing:
        print(f"cxr predict: {path}: no such file or folder", file=sys.stderr)
    if passed_over:
        names = ", ".join(p.name for p in passed_over[:3]) + (", ..." if len(passed_over) > 3 else "")
        print(f"cxr predict: passed over {len(passed_over)} file(s) in the folders that are neither images "
              f"({', '.join(images.FILM_SUFFIXES)}) nor DICOM: {names}", file=sys.stderr)
    if not files:
        raise CxrError("no image files found in " + ", ".join(args.paths))
    predictor = _load_predictor(cfg, args.model, args.threshold)
    out = Path(args.out)
    results = predictor.predict_files(files, out_dir=None if args.no_gradcam else out / "gradcam", statistics=True)
    info = {"source": predictor.source, "threshold": predictor.threshold, "image_size": predictor.image_size,
            "version": predictor.card.get("version"), "run_id": predictor.card.get("run_id")}
    training_films = predictor.card.get("training_films")
    shift = prediction.film_shift(results, training_films)
    csv_path, json_path = prediction.write_summary(results, out, info, shift, training_films)
    for row in results.itertuples():
        verdict = f"refused: {row.error}" if isinstance(row.error, str) else f"{row.probability:.4f}  {row.label}"
        print(f"{row.path}\t{verdict}" + ("  (borderline)" if row.borderline is True else ""))
    scored = int(results["error"].isna().sum())
    if predictor.band:
        borderline = int((results["borderline"] == True).sum())  # noqa: E712 (None means unknown)
        print(f"\n{borderline} borderline: their scores lie within {predictor.band[0]:.3f}-{predictor.band[1]:.3f}, "
              "where the threshold itself could have fallen (its 95 % interval over validation resamples); "
              "the label of these is the least certain.")
    print(f"\n{scored} of {len(results)} images scored with {predictor.source} (threshold "
          f"{predictor.threshold:.4f}); {len(results) - scored} refused. Summary: {csv_path}, {json_path}"
          + ("" if args.no_gradcam else f"; Grad-CAM overlays in {out / 'gradcam'}"))
    if scored:
        _print_film_shift(shift, out, "these scores")
    if args.track:
        info["path"] = ", ".join(str(Path(p).resolve()) for p in args.paths)
        run_id = prediction.log_batch_run(cfg, results, shift, [out / "film_shift.csv", out / "film_shift.png"], info)
        print(f"MLflow run {run_id} (kind batch): the batch's counts and film-shift distances, no per-film output")
    print("Decision support only: a clinician reads every film.")
    return 0 if not missing else 1


def assess(cfg: Config, args: argparse.Namespace) -> int:
    """Measure a model on a labelled cohort of the user's own, beside its figures on the test split."""
    import numpy as np

    from cxr_model import assessment
    from cxr_model.evaluation import describe

    if args.against_threshold is not None and not args.against:
        raise CxrError("--against-threshold needs --against MODEL")
    folder = Path(args.folder)
    cohort = assessment.cohort_name(args.name or folder.resolve().name)
    files = assessment.labelled_files(folder)
    listed = None
    if args.film_list:
        listed, unlisted = assessment.read_film_list(Path(args.film_list), folder, list(files["path"]))
        if unlisted:
            print(f"cxr assess: {len(unlisted)} entries of {args.film_list} name no film of the cohort, e.g. "
                  f"{', '.join(unlisted[:3])}", file=sys.stderr)
    predictor = _load_predictor(cfg, args.model, args.threshold)
    other = _load_predictor(cfg, args.against, args.against_threshold) if args.against else None  # fails before any scoring
    # The films are decoded once when the second model reads them exactly as this one does.
    inputs: list | None = [] if other is not None and other.reads_like(predictor) else None
    results = predictor.predict_files([Path(p) for p in files["path"]], gradcam=False, headers=True,
                                      statistics=True, keep_inputs=inputs)
    results = results.drop(columns=["heatmap"]).assign(y=files["y"].to_numpy(), type=files["type"].to_numpy())
    results = assessment.with_film_facts(results, listed)
    scored = results[results["error"].isna()]
    refused = len(results) - len(scored)
    # The stored threshold's validation interval; a threshold given by hand has none.
    interval = predictor.card.get("threshold", {}).get("ci95") if args.threshold is None else None
    report = assessment.cohort_report(scored, predictor.threshold, interval)
    report["patients_from"] = assessment.patients_source(results, args.film_list)
    theirs = None
    if other is not None:  # the same films through a second model, for a site choosing between two
        theirs = other.score(inputs) if inputs is not None else \
            other.predict_files([Path(p) for p in files["path"]], gradcam=False, progress=False)
        report["against"] = {**assessment.against(scored, theirs, other.threshold, other.source, predictor.threshold),
                             "threshold_given": args.against_threshold is not None,
                             "threshold_stored": args.against_threshold is None and bool(other.card.get("threshold"))}
    training_films = predictor.card.get("training_films")
    shift = assessment.film_shift(scored, training_films)
    if shift is not None:
        report["film_shift"] = shift.to_dict("records")
    out = Path(args.out) if args.out else cfg.layout.assessment_dir(cohort)
    paths = assessment.write_outputs(report, results, scored, out, cohort, training_films, theirs)
    info = {"cohort": cohort, "path": str(folder.resolve()), "fingerprint": assessment.fingerprint(results),
            "source": predictor.source, "version": predictor.card.get("version"), "refused": refused}
    m, n_pos = report["metrics"], int(scored["y"].sum())
    print(f"{cohort}: {len(scored)} films scored ({n_pos} PNEUMONIA, {len(scored) - n_pos} NORMAL), "
          f"{refused} refused as unreadable or implausible (reasons in {out / 'predictions.csv'})")
    print(f"  at the model's threshold {predictor.threshold:.3f}: {describe(m, report['ci95'])}")
    print(f"  (95 % intervals from redrawing {report['ci95_resampled']}; patients from {report['patients_from']})")
    print(f"  at 0.5: {describe(report['at_0_5'])}")
    for end, m_end in report.get("at_threshold_ci95", {}).items():
        print(f"  at the {end} end of the threshold's validation interval, {m_end['threshold']:.3f}: {describe(m_end)}")
    if report.get("borderline"):
        b = report["borderline"]
        print(f"  borderline (scores within the threshold's validation interval): {b['count']} films, "
              f"accuracy {b['accuracy']:.3f} against {b['accuracy_elsewhere']:.3f} for the others")
    for name, group in report["by_type"].items():
        ci = group["sensitivity_ci95"]
        print(f"  {name}: {group['count']} films of {group['patients']} patients, sensitivity "
              f"{group['sensitivity']:.3f} ({ci['low']:.3f}-{ci['high']:.3f}), AUC {group['auc']:.3f}")
    for column, groups in report["by_subgroup"].items():
        for value, g in groups.items():
            rates = ("sensitivity", "specificity")
            shown = describe(g, {f: g[f"{f}_ci95"] for f in rates if f in g}, rates)
            auc = "" if np.isnan(g["auc"]) else f", AUC {g['auc']:.3f}"
            print(f"  {column} {value}: {g['films']} films of {g['patients']} patients ({g['pneumonia']} PNEUMONIA), "
                  + shown + auc)
    if predictor.card.get("test_metrics"):
        print(f"  the model on its own test split: {describe(predictor.card['test_metrics'])}")
    if report.get("against"):
        _print_against(report["against"])
    _print_film_shift(shift, out, "the figures above")
    if not args.no_track:
        run_id = assessment.log_run(cfg, report, paths, info)
        print(f"MLflow run {run_id} (kind assessment)" + (f"; tagged on version {info['version']}"
                                                          if info["version"] else ""))
    print(f"Outputs: {out}")
    return 0


def _print_film_shift(shift, out: Path, reading: str) -> None:
    """The films against the training films: each statistic that differs, or that none does (per
    class for a labelled cohort, as a whole for a batch); `reading`: what to read with it in mind."""
    from cxr_model import film_stats

    if shift is None:
        print("  the model carries no training-film statistics (a bare model file, or registered before "
              "they were recorded): the films cannot be compared with its training films")
        return
    films = int(shift["films"].max()) if len(shift) else 0
    if films < film_stats.MIN_FILMS:
        print(f"  {films} film(s) are too few to compare with the model's training films "
              f"(at least {film_stats.MIN_FILMS})")
        return
    differing = film_stats.differing(shift)
    if differing.empty:
        groups = film_stats.per_class(shift)
        top = groups.loc[groups["ks"].idxmax()]
        print(f"  films like the training films in brightness, contrast and fine detail (largest "
              f"Kolmogorov-Smirnov distance {top['ks']:.2f}: {top['statistic']} of {top['group']} films)")
    else:
        print(f"  films unlike the training films (read {reading} with this in mind):")
        for _, row in differing.iterrows():
            print(f"    {film_stats.describe(row)}")
    print(f"  (every statistic: {out / 'film_shift.csv'}, {out / 'film_shift.png'})")


def card(cfg: Config, args: argparse.Namespace) -> int:
    """Print the model card stored with a registered version (Markdown, or JSON with --json)."""
    from cxr_model.model_card import render_markdown

    from cxr_model import tracking
    from cxr_model.model_card import measured_since, render_measured

    predictor = _load_predictor(cfg, args.model, None)
    if not predictor.card:
        raise CxrError(f"{predictor.source} carries no model card")
    card = dict(predictor.card)
    if card.get("version") and predictor.source.startswith("models:/"):  # the registry knows more by now
        card["measured_since_registration"] = measured_since(
            tracking.client(cfg).get_model_version(card["model"], str(card["version"])).tags)
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print(render_markdown(card) + (render_measured(card["measured_since_registration"])
                                       if "measured_since_registration" in card else ""))
    return 0


def champion(cfg: Config, args: argparse.Namespace) -> int:
    """Move the champion alias by hand, with the reason recorded on the version."""
    from cxr_model import promotion, tracking

    name = cfg.mlflow.registered_model
    previous = promotion.promote_by_hand(tracking.client(cfg), name, args.version, args.reason)
    print(f"{name} v{args.version} is champion (previous: {'v' + previous if previous else 'none'}); "
          f"reason recorded on the version")
    return 0


def _seconds(label: str, seconds: dict[str, float]) -> str:
    return f"{label}: " + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())


def stack(cfg: Config, args: argparse.Namespace) -> int:
    """Start, stop or show the team stack (PostgreSQL, MLflow server, Prefect server, worker)."""
    from cxr_model import stack as team

    if args.action == "down":
        stopped = team.down(cfg)
        if not stopped:
            print("nothing was running")
            return 0
        print("stop seconds: " + ", ".join(f"{name} {s.seconds:.1f}{' (killed)' if s.killed else ''}"
                                           for name, s in stopped.items()))
        killed = [name for name, s in stopped.items() if s.killed]
        if killed:
            print(f"killed after the grace time, their shutdown unfinished: {', '.join(killed)} "
                  f"(logs in {team.Stack(cfg).state})", file=sys.stderr)
        return 0
    if args.action == "up":
        print(_seconds("start-up seconds", team.up(cfg, args.only)))
    state = team.status(cfg)
    for key, value in state.items():
        print(f"export {key}={value}" if key.isupper() else f"{key:<9} {value}")
    return 0


def _threshold(text: str) -> float:
    """A decision threshold given by hand: a score between 0 and 1, as one outside calls every film alike."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a threshold is a score between 0 and 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr", description="cxr pneumonia pipeline steps and prediction")
    parser.add_argument("--params", help="parameters file (default: $CXR_PARAMS or ./params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STEP_NAMES:
        sub.add_parser(name, help=STEP_HELP[name])
    model_help = ("model to use: a registered version number, @alias, models:/ or runs:/ URI, an MLflow "
                  "model folder, or a .keras file (default: models:/<registered_model>@champion)")
    p = sub.add_parser("predict", help="score new images (JPEG, PNG, DICOM) with a registered model")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--model", help=model_help)
    p.add_argument("--out", default="predictions", help="folder for the summary and overlays (default: predictions)")
    p.add_argument("--threshold", type=_threshold, help="override the model's stored decision threshold (0-1)")
    p.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM overlays")
    p.add_argument("--track", action="store_true", help="log an MLflow run (kind batch) with the batch's counts, "
                   "share called PNEUMONIA and film-shift distances, to follow a site's batches over time; "
                   "nothing per film")
    a = sub.add_parser("assess", help="measure a model on a labelled cohort of your own (NORMAL/, PNEUMONIA/)")
    a.add_argument("folder", help="cohort folder: images below NORMAL/ and PNEUMONIA/ folders, at any depth")
    a.add_argument("--model", help=model_help)
    a.add_argument("--name", help="cohort name for outputs and MLflow (default: the folder's name)")
    a.add_argument("--out", help="output folder (default: artifacts/assess/<name>)")
    a.add_argument("--threshold", type=_threshold, help="override the model's stored decision threshold (0-1)")
    a.add_argument("--against", metavar="MODEL", help="a second model (the forms --model takes) to score the "
                   "same films at its own stored threshold, with the AUC difference and its interval")
    a.add_argument("--against-threshold", type=_threshold, metavar="THRESHOLD",
                   help="the second model's threshold (0-1): a bare .keras file stores none (0.5 otherwise)")
    a.add_argument("--film-list", metavar="CSV", help="your list of the films: a file column (the path below "
                   "the folder, or the file name) and a patient column (for films whose names and headers do not "
                   "say it) and/or subgroup columns (scanner, series, ...: figures per value)")
    a.add_argument("--no-track", action="store_true", help="do not log an MLflow run or tag the version")
    c = sub.add_parser("card", help="show the model card of a registered model")
    c.add_argument("--model", help=model_help)
    c.add_argument("--json", action="store_true", help="print the card as JSON")
    h = sub.add_parser("champion", help="make a registered version champion by hand, over the gates")
    h.add_argument("version", help="registered version number")
    h.add_argument("--reason", required=True, help="why (recorded on the version's promotion.reasons tag)")
    s = sub.add_parser("stack", help="team stack: PostgreSQL + MLflow server + Prefect server + worker")
    s.add_argument("action", choices=("up", "down", "status"))
    s.add_argument("--only", nargs="+", choices=("postgres", "mlflow", "prefect", "worker"),
                   help="with up: start only these (e.g. --only worker on another machine)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        cfg = load_config(args.params)
        if args.command == "predict":
            return predict(cfg, args)
        if args.command == "assess":
            return assess(cfg, args)
        if args.command == "card":
            return card(cfg, args)
        if args.command == "stack":
            return stack(cfg, args)
        if args.command == "champion":
            return champion(cfg, args)
        from cxr_model import steps

        result = steps.STEPS[args.command](cfg)
    except CxrError as exc:
        print(f"cxr {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
