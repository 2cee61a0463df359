"Shared fixtures and helpers: one torch thread, a tiny model trained for a few steps once per session, CLI helpers."
import os, shutil
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub; fail fast instead of waiting on the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A few dozen examples, 2 epochs: enough for every output file (2 checkpoints, a 2-row history), seconds to train.
TINY_QUICK = dict(num_epochs=2, max_train_samples=48, max_eval_samples=8, logging_steps=1)

def quick_cfg(output_dir, **overrides):
    "The tiny preset with the quick recipe (`TINY_QUICK`), writing to `output_dir`: the one recipe every test trains with."
    from claim_t5.config import make_config
    return make_config("tiny", output_dir=str(output_dir), **{**TINY_QUICK, **overrides})

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "The TrainResult of a seconds-long tiny training run (do not modify its files: copy them first)."
    from claim_t5.train import train
    cfg = quick_cfg(tmp_path_factory.mktemp("tiny_run")/"model_training")
    return train(cfg, verbose=False)

@pytest.fixture(scope="session")
def tiny_model_dir(tiny_run) -> Path:
    "The fine_tuned_model/ folder of `tiny_run` (read-only: copy it before changing anything)."
    return Path(tiny_run.model_dir)

# On this shared 2-core machine torch's default of one thread per core makes generation 10-100x slower whenever another
# process is busy (the threads spin waiting for each other); one thread is as fast when the machine is idle and keeps
# the suite's runtime predictable. Set before the session's tiny training run, restored at the end.
@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def cli_env() -> dict:
    "The environment for console-script subprocesses: offline, one thread."
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}

def copy_model(src: Path, dst: Path) -> Path:
    "A private, writable copy of a model folder."
    shutil.copytree(src, dst)
    return dst
