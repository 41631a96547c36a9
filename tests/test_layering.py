"""The architecture's rules, checked: the SNN library stays plain PyTorch, entry points are peers."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "snn_lightning"
LIBRARY = ["neurons", "surrogates", "norm", "models", "export", "monitor", "errors", "_checks", "energy", "telemetry"]
FRAMEWORKS = ("lightning", "pytorch_lightning", "hydra", "omegaconf")
ENTRY_POINTS = ["train", "eval", "analyze", "aggregate", "export", "dashboard"]
SHIMS = ["train", "eval", "analyze", "aggregate"]  # snn_lightning/<name>.py kept for `python -m`


def test_library_imports_no_lightning_hydra_or_omegaconf():
    modules = [m for m in LIBRARY if (PACKAGE / m).is_dir() or (PACKAGE / f"{m}.py").is_file()]
    code = (
        "import sys\n"
        + "".join(f"import snn_lightning.{m}\n" for m in modules)
        + f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({FRAMEWORKS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", f"the library pulled in {out.stdout.strip()} ({', '.join(modules)})"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the snn_lightning modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("snn_lightning")}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_points_import_no_other_entry_point(entry):
    path = PACKAGE / "cli" / f"{entry}.py"
    if not path.is_file():
        pytest.skip(f"no cli/{entry}.py")
    others = {f"snn_lightning.{p}.{e}" for p in ("cli",) for e in ENTRY_POINTS if e != entry}
    others |= {f"snn_lightning.{e}" for e in SHIMS if e != entry}
    bad = sorted(_imported_modules(path) & others)
    assert not bad, f"cli/{entry}.py imports {bad}"


def test_library_imports_nothing_from_the_application_half():
    app = {"snn_lightning.cli", "snn_lightning.experiment", "snn_lightning.module", "snn_lightning.callbacks",
           "snn_lightning.data", "snn_lightning.loggers", "snn_lightning.runs", "snn_lightning.sweeps"}
    for m in LIBRARY:
        files = sorted((PACKAGE / m).rglob("*.py")) if (PACKAGE / m).is_dir() else [PACKAGE / f"{m}.py"]
        for f in files:
            if not f.is_file():
                continue
            bad = sorted(n for n in _imported_modules(f) if any(n == a or n.startswith(a + ".") for a in app))
            assert not bad, f"{f.relative_to(PACKAGE)} imports {bad}"


def test_no_module_is_over_400_lines():
    long = {str(f.relative_to(PACKAGE)): n for f in PACKAGE.rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert not long, f"split these by role: {long}"
