"""The front door (issue 30): a fresh process gets what a user calls from `from claim_t5.all import *`, and the layers
hold: `all` imports from the modules, no module imports `all`."""
import re, subprocess, sys
from pathlib import Path

import pytest

from conftest import cli_env

LIB = Path(__file__).resolve().parent.parent/"claim_t5"
NAMES = ["ClaimT5Config", "make_config", "list_presets", "step_plan", "parse_metadata", "format_metadata",
         "load_claim_data", "write_bundled_dataset", "FactChecker", "learn_from_splits", "fact_accuracy",
         "train", "evaluate_model", "load_metrics", "ClaimReportGenerator", "generate_file", "run_pipeline"]

SCRIPT = """
from claim_t5.all import *
names = %r
missing = [n for n in names if n not in globals()]
assert not missing, f"not given by claim_t5.all: {missing}"
assert all(callable(globals()[n]) for n in names)
cfg = make_config("tiny", num_epochs=1)
assert isinstance(cfg, ClaimT5Config) and "tiny" in list_presets() and step_plan(cfg)["train_examples"] == 5289
line = "shipment_id=SHP-1; damage_type=dent; severity=high"
assert format_metadata(parse_metadata(line)) == line
ds = load_claim_data(progress=False)
checker = learn_from_splits(ds)
assert isinstance(checker, FactChecker)
test = ds["test"]
print("all facts correct", fact_accuracy(test["input"][:20], test["output"][:20], checker)["all_facts_correct"])
"""


@pytest.mark.slow  # a fresh process (torch and transformers imported): ~10 s
def test_fresh_process_imports_the_front_door_and_calls_it():
    r = subprocess.run([sys.executable, "-c", SCRIPT % NAMES], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "all facts correct 1.0" in r.stdout


def test_no_module_imports_the_front_door():
    offenders = [p.name for p in LIB.glob("*.py") if p.name != "all.py"
                 and re.search(r"^\s*(from\s+(claim_t5)?\.all\s+import|import\s+claim_t5\.all)", p.read_text(), re.M)]
    assert not offenders, f"modules importing claim_t5.all (it must stay on top of the layers): {offenders}"
