"""The validate stage: the Great Expectations suite; a critical rule stops the pipeline."""

from __future__ import annotations

from cxr_model.config import Config
from cxr_model.errors import ValidationFailed
from cxr_model.stages.common import log, readable, readable_pixels, step


@step("validate")
def validate(cfg: Config) -> dict:
    """Run the Great Expectations suite; raise ValidationFailed on any critical rule. Decodes the
    films once into the array cache that profile and train read."""
    from cxr_model import data, plots, validation

    lay = cfg.layout
    manifest = data.read_manifest(lay.manifest)
    pixels = readable_pixels(cfg, manifest)
    near = validation.near_copies(manifest, pixels, cfg.validate.near_copy_correlation)
    headers = validation.header_problems(manifest, cfg.data_source, cfg.predict)
    summary = validation.validate_manifest(manifest, cfg.validate, lay.validation_dir, near, headers)
    # The rule's evidence, to look at, whether it passed or not.
    pairs = validation.closest_pairs(manifest, near)
    pairs.to_csv(lay.closest_pairs, index=False)
    films = dict(zip(readable(manifest)["path"], pixels))
    plots.closest_pairs(pairs, films, cfg.validate.near_copy_correlation, lay.closest_pairs_png)
    if not summary["success"]:
        raise ValidationFailed(validation.failure_message(summary))
    log.info("validate: all critical rules passed (%d warning(s)); data docs: %s",
             summary["warnings"], summary["data_docs"])
    return {"success": True, "warnings": summary["warnings"]}
