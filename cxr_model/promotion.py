"""Champion/challenger: a new version becomes `champion` only if it passes the gates and is not
worse than the current champion on the same fixed evaluation set."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cxr_model.config import PromoteConfig
from cxr_model.errors import CxrError
from cxr_model.probes import largest_ratio

log = logging.getLogger("cxr.promotion")

CHAMPION = "champion"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "promoted to champion" if self.promote else "not promoted"

    def sentence(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)


def decide(candidate: dict, champion: dict | None, gates: PromoteConfig) -> Decision:
    """Gate the candidate on its validation metrics, then compare it with the champion.

    `candidate` holds val_auc, val_sensitivity (at its stored threshold) and eval_auc, and for
    the shortcut gates probe_ratios (NORMAL score multiple per shortcut probe) and
    val_aspect_jitter_auc; `champion` holds eval_auc of the current champion on the same
    evaluation images, and optionally difference_ci95 (the paired interval of candidate minus
    champion, reported beside the margin, not gated on), or is None.
    """
    reasons, ok = [], True
    if candidate["val_auc"] < gates.min_val_auc:
        ok = False
        reasons.append(f"validation AUC {candidate['val_auc']:.4f} < gate {gates.min_val_auc}")
    if candidate["val_sensitivity"] < gates.min_val_sensitivity:
        ok = False
        reasons.append(f"validation sensitivity {candidate['val_sensitivity']:.4f} < gate "
                       f"{gates.min_val_sensitivity}")
    failures, figures = shortcut_gates(candidate, gates)
    if failures:
        ok = False
        reasons.extend(failures)
    if ok:
        passed = [f"validation AUC {candidate['val_auc']:.4f}", f"sensitivity {candidate['val_sensitivity']:.4f}",
                  *figures]
        reasons.append(f"passes gates ({', '.join(passed)})")
    if champion is None:
        reasons.append("no current champion")
    else:
        drop = champion["eval_auc"] - candidate["eval_auc"]
        paired = champion.get("difference_ci95")
        spread = (f" (difference {_signed(-drop)}, 95 % CI {_signed(paired['low'])} to {_signed(paired['high'])} "
                  f"over resampled patients)" if paired else "")
        compare = (f"evaluation AUC {candidate['eval_auc']:.4f} vs champion v{champion['version']} "
                   f"{champion['eval_auc']:.4f}{spread}")
        if drop > gates.max_auc_drop:
            ok = False
            reasons.append(f"{compare}: worse by {drop:.4f} > margin {gates.max_auc_drop}")
        else:
            reasons.append(f"{compare}: within margin {gates.max_auc_drop}")
    return Decision(ok, reasons)


def _signed(value: float) -> str:
    """+0.0012 / -0.0012, and +0.0000 for anything that rounds to zero (never "-0.0000")."""
    return f"{round(value, 4) + 0.0:+.4f}"


def shortcut_gates(candidate: dict, gates: PromoteConfig) -> tuple[list[str], list[str]]:
    """Why a model that leans on how this site takes its films must not serve another site (a
    shortcut probe past its gate, or validation AUC that falls when the squash is scrambled),
    and the figures each gate that is on read: (failures, figures)."""
    failures, figures = [], []
    if gates.max_probe_ratio > 0:
        ratios = candidate.get("probe_ratios") or {}
        largest = largest_ratio(ratios)
        if largest is None:
            failures.append("no shortcut probes recorded (re-run evaluate)")
        else:
            figures.append(f"largest shortcut probe {largest[0]} {largest[1]:.2f}x")
        for name, ratio in sorted(ratios.items(), key=lambda item: -item[1]):
            if ratio > gates.max_probe_ratio:
                failures.append(f"shortcut probe {name}: validation NORMAL films score {ratio:.2f}x > gate "
                                f"{gates.max_probe_ratio}")
    if gates.max_aspect_jitter_drop > 0:
        jittered = candidate.get("val_aspect_jitter_auc")
        if jittered is None:
            failures.append("no aspect-jittered validation AUC recorded (re-run evaluate)")
        else:
            drop = candidate["val_auc"] - jittered
            figures.append(f"{drop:.4f} lower with the aspect scrambled")
            if drop > gates.max_aspect_jitter_drop:
                failures.append(f"validation AUC falls {drop:.4f} with the aspect scrambled "
                                f"> gate {gates.max_aspect_jitter_drop}")
    return failures, figures


def current_champion(client: MlflowClient, name: str) -> str | None:
    """Version number holding the champion alias, or None."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def training_manifest(client: MlflowClient, name: str, version: str) -> pd.DataFrame | None:
    """The manifest a version was trained on (its run logs it), or None where none was logged:
    what the version has seen, so new films can be told from old by their content."""
    from cxr_model.data import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_id = client.get_model_version(name, version).run_id
            return read_manifest(Path(client.download_artifacts(run_id, "data/manifest.csv", tmp)))
        except (MlflowException, OSError, CxrError) as exc:
            log.info("promotion: no training manifest for version %s (%s)", version, str(exc).splitlines()[0])
            return None


def apply(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """Record the decision on the version; move the alias last, in one registry call.

    The version is tagged `pending` before the alias moves, so a crash at any point leaves
    the previous champion in place and no version wrongly marked as promoted.
    """
    client.set_model_version_tag(name, version, "promotion.reasons", "; ".join(decision.reasons))
    if not decision.promote:
        client.set_model_version_tag(name, version, "promotion.decision", "rejected")
        return
    client.set_model_version_tag(name, version, "promotion.decision", "pending")
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion.decision", "promoted")
    log.info("promotion: %s version %s is now @%s", name, version, CHAMPION)


def promote_by_hand(client: MlflowClient, name: str, version: str, reason: str) -> str | None:
    """Make a version champion over the gates (a deliberate change of default the test split
    would veto on seed noise alone); the reason is recorded on the version. Returns the previous
    champion."""
    if not reason.strip():
        raise CxrError("a hand promotion needs a reason (--reason): it is recorded on the version")
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise CxrError(f"registered model {name!r} has no version {version}") from None
    previous = current_champion(client, name)
    reasons = [f"promoted by hand: {reason.strip()}",
               f"previous champion v{previous}" if previous else "no previous champion"]
    apply(client, name, version, Decision(True, reasons))
    return previous


def run_note(metrics: dict, decision: Decision, version: str, arrivals: str | None = None) -> str:
    """The run's description in the MLflow UI (Markdown): what a reader comparing runs looks for
    first, the test figures with their intervals and what became of the version."""
    from cxr_model.evaluation import describe

    lines = [f"**Version {version} {decision.verdict}.** " + "; ".join(decision.reasons) + ".",
             "",
             f"Test split at the validation-chosen threshold {metrics['threshold']['threshold']:.3f}: "
             + describe(metrics["test"], metrics.get("test_ci95"), dash="–")
             + f" (95 % intervals redrawing {metrics.get('test_ci95_resampled', 'films')}).",
             "",
             f"Validation AUC {metrics['val']['auc']:.4f}."]
    if arrivals:
        lines += ["", arrivals[0].upper() + arrivals[1:] + "."]
    return "\n".join(lines)
