"Shared fixtures: a tiny model trained for a few steps once per test session."
import os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub; fail fast instead of waiting on the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A few dozen examples, 2 epochs: enough for every output file (2 checkpoints, a 2-row history), seconds to train.
TINY_QUICK = dict(num_epochs=2, max_train_samples=48, max_eval_samples=8, logging_steps=1)

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "The TrainResult of a seconds-long tiny training run (do not modify its files: copy them first)."
    from claim_t5.config import make_config
    from claim_t5.train import train
    cfg = make_config("tiny", output_dir=str(tmp_path_factory.mktemp("tiny_run")/"model_training"), **TINY_QUICK)
    return train(cfg, verbose=False)

@pytest.fixture(scope="session")
def tiny_model_dir(tiny_run) -> Path:
    "The fine_tuned_model/ folder of `tiny_run` (read-only: copy it before changing anything)."
    return Path(tiny_run.model_dir)
