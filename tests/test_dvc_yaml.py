"""dvc.yaml and the library must agree on paths and commands, so the two drivers cannot drift."""

from pathlib import Path

import yaml

from cxr_model.cli import STEP_NAMES
from cxr_model.steps import STEPS
from cxr_model.layout import Layout
from flows.training import PIPELINE
from tests.conftest import ROOT


def _paths(entries):
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else entry


def test_every_stage_runs_a_cxr_step_in_flow_order():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [name for name, _ in PIPELINE]
    for name, stage in stages.items():
        assert stage["cmd"] == f"cxr {name}" and name in STEP_NAMES
    assert list(STEP_NAMES) == list(STEPS), "every library step needs its `cxr` command, in flow order"


def test_every_declared_output_is_a_layout_path():
    layout = Layout(Path("artifacts"))
    known = {str(getattr(layout, attr)) for attr in dir(Layout) if isinstance(getattr(Layout, attr), property)}
    known |= {str(p) for p in (layout.evaluate_dir / n for n in (
        "confusion_matrix.png", "confusion_matrix_at_0_5.png", "roc.png", "precision_recall.png",
        "reliability.png", "validation_hardest.png", "validation_probes.png"))}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for path in _paths(stage.get(key)):
                assert path in known, f"{path} is not in cxr_model/layout.py"


def test_params_sections_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for key in stage.get("params", []):
            assert key.split(".")[0] in params


def test_train_depends_on_every_module_that_shapes_the_model():
    """A change to a layer, saved or used in training, changes the model: `dvc repro` must retrain."""
    deps = set(_paths(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]))
    layer_modules = {f"cxr_model/{path.name}" for path in sorted((ROOT / "cxr_model").glob("*.py"))
                     if "register_keras_serializable" in path.read_text()}
    assert layer_modules >= {"cxr_model/augmentation.py", "cxr_model/normalization.py"}
    assert layer_modules | {"cxr_model/model.py", "cxr_model/training.py"} <= deps, f"train stage misses {sorted(layer_modules - deps)}"


# Modules that shape no stage's outputs: settings are tracked as params, paths by the outs.
NOT_OUTPUT_SHAPING = {"cxr_model/config.py", "cxr_model/errors.py", "cxr_model/layout.py"}
# The step wrapper in stages/common.py calls tracking only to record a failed run.
FAILURE_ONLY = {"cxr_model/tracking.py"}


def _imported_modules(path: Path) -> set[str]:
    """cxr_model modules a file imports anywhere in it (`from cxr_model import x`,
    `from cxr_model.x import y`, `import cxr_model.x`), as paths."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxr_model"):
            names |= {node.module} if node.module != "cxr_model" else {f"cxr_model.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("cxr_model.")}
    return {name.replace(".", "/") + ".py" for name in names}


def test_every_stage_depends_on_its_own_code_and_every_module_that_code_imports():
    """Edit a stage's code, or a module it calls, and `dvc repro` must run that stage again."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    common = ROOT / "cxr_model" / "stages" / "common.py"
    shared = {"cxr_model/stages/common.py"} | (_imported_modules(common) - FAILURE_ONLY)
    for name, stage in stages.items():
        own = ROOT / "cxr_model" / "stages" / f"{name}.py"
        assert own.is_file(), f"stage {name} has no module {own}"
        needed = ({f"cxr_model/stages/{name}.py"} | shared | _imported_modules(own)) - NOT_OUTPUT_SHAPING
        deps = set(_paths(stage["deps"]))
        assert needed <= deps, f"stage {name} misses {sorted(needed - deps)}"
