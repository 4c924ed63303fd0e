"""Great Expectations gate: critical data problems stop the pipeline before any training."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_model import dicom, similarity
from cxr_model.config import PredictConfig, ValidateConfig
from cxr_model.data import LABELS, SPLITS
from cxr_model.plausibility import header_reason

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

log = logging.getLogger("cxr.validation")

CRITICAL, WARNING = "critical", "warning"
CONVERTED_NOTE = "converted to 8-bit grayscale"
# Great Expectations' Data Docs below the validation folder; result.json (a DVC output) names
# them this way, so no clone's own path is in it.
DATA_DOCS_INDEX = Path("gx", "uncommitted", "data_docs", "local_site", "index.html")


@dataclass(frozen=True)
class Rule:
    table: str  # "images" (one row per image) or "classes" (one row per split and label)
    severity: str
    sentence: str
    expectation: gx.expectations.Expectation


def near_copies(manifest: pd.DataFrame, pixels: np.ndarray, threshold: float) -> pd.DataFrame:
    """Per manifest row (the decoded films of its readable rows, in order): its closest correlation
    with a film of another split, that film, and the film again when the pair is a near copy."""
    rows = manifest.index[manifest["error"] == ""]
    best, where = similarity.nearest_in_other_splits(pixels, manifest.loc[rows, "split"].to_numpy())
    found = where >= 0
    near = pd.DataFrame({"near_copy_correlation": 0.0, "nearest_other_split": ""}, index=manifest.index)
    near.loc[rows, "near_copy_correlation"] = best.astype(float)
    near.loc[rows[found], "nearest_other_split"] = manifest.loc[rows, "path"].to_numpy()[where[found]]
    near["near_copy_of"] = near["nearest_other_split"].where(near["near_copy_correlation"] >= threshold, "")
    return near


def header_problems(manifest: pd.DataFrame, source: Path, cfg: PredictConfig) -> pd.Series:
    """Per manifest row, what its DICOM header says against the film ("" for JPEG, PNG and films
    whose header is fine): a film that `cxr predict` would refuse is not one to train on."""
    problems = pd.Series("", index=manifest.index, dtype=object)
    for i in manifest.index[(manifest["mode"] == "DICOM") & (manifest["error"] == "")]:
        problems[i] = header_reason(dicom.read_header(source / manifest.at[i, "path"]), cfg) or ""
    return problems


def image_facts(manifest: pd.DataFrame, near: pd.DataFrame | None = None,
                headers: pd.Series | None = None) -> pd.DataFrame:
    """The manifest plus the per-image columns the rules look at (with `near_copies` and
    `header_problems` when given)."""
    facts = manifest.copy() if near is None else manifest.join(near)
    if headers is not None:
        facts["header_problem"] = headers
    facts["decodes"] = facts["error"] == ""
    short = facts[["width", "height"]].min(axis=1)
    facts["min_side"] = short
    facts["aspect_ratio"] = (facts[["width", "height"]].max(axis=1) / short.where(short > 0)).fillna(0.0)
    facts["hash_splits"] = facts.groupby("sha256")["split"].transform("nunique")
    train_val = facts["split"].isin(["train", "val"])
    per_patient = facts[train_val].groupby("patient_id")["split"].nunique()
    facts["patient_train_val_splits"] = facts["patient_id"].map(per_patient).where(train_val, 0).astype(int)
    return facts


def closest_pairs(manifest: pd.DataFrame, near: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The k most alike pairs of films in different splits, most alike first: what the near-copy
    rule judged, to look at (a pair is listed once)."""
    split = dict(zip(manifest["path"], manifest["split"]))
    pairs = near.assign(path=manifest["path"]).loc[near["nearest_other_split"] != ""]
    pairs = pairs.assign(key=[tuple(sorted(p)) for p in zip(pairs["path"], pairs["nearest_other_split"])])
    pairs = pairs.sort_values("near_copy_correlation", ascending=False).drop_duplicates("key").head(k)
    return pd.DataFrame({"correlation": pairs["near_copy_correlation"].round(4).to_numpy(),
                         "path": pairs["path"].to_numpy(), "split": pairs["path"].map(split).to_numpy(),
                         "other_path": pairs["nearest_other_split"].to_numpy(),
                         "other_split": pairs["nearest_other_split"].map(split).to_numpy()})


def class_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per split and label (zeros included), with each split's pneumonia share."""
    counts = manifest.groupby(["split", "label"]).size()
    rows = []
    for split in SPLITS:
        total = int(sum(counts.get((split, lab), 0) for lab in LABELS))
        for label in LABELS:
            n = int(counts.get((split, label), 0))
            share = counts.get((split, LABELS[1]), 0) / total if total else 0.0
            rows.append({"path": f"{split}/{label}", "split": split, "label": label,
                         "images": n, "pneumonia_share": float(share)})
    return pd.DataFrame(rows)


def rules(cfg: ValidateConfig, films: bool = True, headers: bool = True) -> list[Rule]:
    """The expectation suite, built from params.yaml so bounds live with the other knobs (the
    near-copy rule needs the decoded films, the header rule the DICOM headers)."""
    E = gx.expectations
    lo, hi = cfg.pneumonia_share
    near_copy = [Rule("images", CRITICAL, "no film is a near copy of a film in another split (thumbnail "
                      f"correlation below {cfg.near_copy_correlation})",
                      E.ExpectColumnValuesToBeBetween(column="near_copy_correlation",
                                                      max_value=cfg.near_copy_correlation, strict_max=True))]
    header = [Rule("images", CRITICAL, "DICOM headers show a frontal chest radiograph of a child, "
                   "as `cxr predict` requires (params predict.dicom_*, predict.max_patient_age_years)",
                   E.ExpectColumnValuesToBeInSet(column="header_problem", value_set=[""]))]
    return [
        Rule("images", CRITICAL, "every image path is present",
             E.ExpectColumnValuesToNotBeNull(column="path")),
        Rule("images", CRITICAL, f"labels are {' or '.join(LABELS)}",
             E.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS))),
        Rule("images", CRITICAL, f"splits are {', '.join(SPLITS)}",
             E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS))),
        Rule("images", CRITICAL, "every file decodes as an image",
             E.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True])),
        Rule("images", CRITICAL, f"image modes are supported ({', '.join(cfg.allowed_modes)})",
             E.ExpectColumnValuesToBeInSet(column="mode", value_set=list(cfg.allowed_modes),
                                           row_condition='decodes == True', condition_parser="pandas")),
        Rule("images", WARNING, f"images are 8-bit grayscale, RGB or DICOM (others are {CONVERTED_NOTE})",
             E.ExpectColumnValuesToBeInSet(column="mode", value_set=["L", "RGB", "DICOM"],
                                           row_condition='decodes == True', condition_parser="pandas")),
        Rule("images", CRITICAL, f"images are at least {cfg.min_side} px on each side",
             E.ExpectColumnValuesToBeBetween(column="min_side", min_value=cfg.min_side,
                                             row_condition='decodes == True', condition_parser="pandas")),
        Rule("images", WARNING, f"aspect ratio is at most {cfg.max_aspect_ratio}",
             E.ExpectColumnValuesToBeBetween(column="aspect_ratio", max_value=cfg.max_aspect_ratio,
                                             row_condition='decodes == True', condition_parser="pandas")),
        Rule("images", CRITICAL, "a file (sha256) appears once within a split",
             E.ExpectCompoundColumnsToBeUnique(column_list=["split", "sha256"])),
        Rule("images", CRITICAL, "a file (sha256) never appears in two splits",
             E.ExpectColumnValuesToBeBetween(column="hash_splits", max_value=1)),
        Rule("images", CRITICAL, "no patient has images in both train and val",
             E.ExpectColumnValuesToBeBetween(column="patient_train_val_splits", max_value=1)),
        *(near_copy if films else []),
        *(header if headers else []),
        Rule("classes", CRITICAL, f"every split holds at least {cfg.min_images_per_class} images per class",
             E.ExpectColumnValuesToBeBetween(column="images", min_value=cfg.min_images_per_class)),
        Rule("classes", CRITICAL, f"the pneumonia share of every split is within [{lo}, {hi}]",
             E.ExpectColumnValuesToBeBetween(column="pneumonia_share", min_value=lo, max_value=hi)),
    ]


def _context(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _run_table(context, table: str, frame: pd.DataFrame, table_rules: list[Rule]):
    source = context.data_sources.add_or_update_pandas(f"cxr-{table}")
    asset = source.add_dataframe_asset(table)
    batch = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=f"cxr-{table}"))
    for rule in table_rules:
        rule.expectation.meta = {"severity": rule.severity, "rule": rule.sentence}
        suite.add_expectation(rule.expectation)
    suite.save()
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"cxr-{table}", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"cxr-{table}",
        validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]},
    ))
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(run.run_results.values()))


def _offenders(result, facts: pd.DataFrame, limit: int) -> tuple[int, list[str]]:
    """How many rows broke a rule and the first few, with the decode error when there is one."""
    info = result.result or {}
    count = int(info.get("unexpected_count") or 0)
    errors = dict(zip(facts["path"], facts["error"])) if "error" in facts else {}
    copies = dict(zip(facts["path"], facts["near_copy_of"])) if "near_copy_of" in facts else {}
    headers = dict(zip(facts["path"], facts["header_problem"])) if "header_problem" in facts else {}
    examples = []
    for row in (info.get("unexpected_index_list") or [])[:limit]:
        path = row.get("path") if isinstance(row, dict) else str(row)
        reason = (errors.get(path, "") or (f"near copy of {copies[path]}" if copies.get(path) else "")
                  or headers.get(path, ""))
        examples.append(f"{path} ({reason})" if reason else str(path))
    return count, examples


def validate_manifest(manifest: pd.DataFrame, cfg: ValidateConfig, out_dir: Path,
                      near: pd.DataFrame | None = None, headers: pd.Series | None = None) -> dict:
    """Run the suite, write result.json and Data Docs under out_dir, and return the summary;
    `near`: the manifest's `near_copies` (for the near-copy rule), `headers` its
    `header_problems` (for the DICOM header rule)."""
    context = _context(out_dir)
    facts = image_facts(manifest, near, headers)
    tables = {"images": facts, "classes": class_table(manifest)}
    checks = []
    for table, frame in tables.items():
        table_rules = [r for r in rules(cfg, films=near is not None, headers=headers is not None)
                       if r.table == table]
        result = _run_table(context, table, frame, table_rules)
        for res in result.results:
            meta = res.expectation_config.meta or {}
            count, examples = _offenders(res, frame, cfg.max_examples)
            checks.append({
                "rule": meta.get("rule"), "severity": meta.get("severity"),
                "expectation": res.expectation_config.type,
                "column": res.expectation_config.kwargs.get("column")
                or res.expectation_config.kwargs.get("column_list"),
                "success": bool(res.success), "unexpected_count": count, "examples": examples,
            })
    failed = [c for c in checks if not c["success"] and c["severity"] == CRITICAL]
    warned = [c for c in checks if not c["success"] and c["severity"] == WARNING]
    summary = {"success": not failed, "critical_failures": len(failed), "warnings": len(warned),
               "checks": checks, "data_docs": str(out_dir / DATA_DOCS_INDEX)}
    saved = {**summary, "data_docs": DATA_DOCS_INDEX.as_posix()}
    (out_dir / "result.json").write_text(json.dumps(saved, indent=2))
    for check in warned:
        log.warning("validate: warning: %s", describe(check))
    return summary


def describe(check: dict) -> str:
    """One sentence for a failed rule: which rule, how many files, which ones."""
    where = f" e.g. {'; '.join(check['examples'])}" if check["examples"] else ""
    return f"{check['rule']} [{check['expectation']}]: {check['unexpected_count']} offending row(s){where}"


def failure_message(summary: dict) -> str:
    """The message a failed gate stops the flow with."""
    lines = [f"data validation failed: {summary['critical_failures']} critical rule(s) broken; "
             "training will not start"]
    lines += [f"  - {describe(c)}" for c in summary["checks"]
              if not c["success"] and c["severity"] == CRITICAL]
    lines.append(f"  details: {summary['data_docs']}")
    return "\n".join(lines)
