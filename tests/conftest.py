"Shared fixtures and helpers: one torch thread, a tiny model trained for a few steps once per session, CLI helpers."
import contextlib, io, os, re, shutil, socket, subprocess, sys, warnings
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub; fail fast instead of waiting on the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "The TrainResult of a seconds-long tiny training run (do not modify its files: copy them first)."
    from claim_t5.config import quick_config  # the one seconds-long recipe (2 checkpoints, a 2-row history)
    from claim_t5.train import train
    cfg = quick_config(tmp_path_factory.mktemp("tiny_run")/"model_training")
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

BIN = Path(sys.executable).parent  # where the console scripts are installed

def cli_subprocess(script:str, *args, input:str|None=None, cwd=None, timeout:int=600) -> subprocess.CompletedProcess:
    "Run the installed console script `script` in a fresh process (entry point, imports and library warnings included)."
    return subprocess.run([str(BIN/script), *map(str, args)], input=input, capture_output=True, text=True,
                          errors="replace", env=cli_env(), cwd=cwd, timeout=timeout)

def run_cli(script:str, *args, input:str|None=None, cwd=None) -> subprocess.CompletedProcess:
    """Run console script `script`'s `main` in this process, as its entry point would: argv parsed by the same
    fastcore parser, stdin from `input`, stdout/stderr captured, the exit code from `sys.exit` or the return value.
    Ten times faster than `cli_subprocess` (no torch/transformers import per call); the tests that check what a
    fresh process prints (entry points, no library warnings) use `cli_subprocess`."""
    from importlib.metadata import entry_points
    from fastcore.script import anno_parser
    import torch
    (ep,) = entry_points(group="console_scripts", name=script)
    main = ep.load()
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv, sys.stdin, os.getcwd(), torch.get_num_threads()
    sys.argv, sys.stdin = [script, *map(str, args)], io.StringIO(input or "")
    code = 0
    try:
        if cwd: os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            try:
                kwargs = vars(anno_parser(main.__wrapped__, prog=script).parse_args(sys.argv[1:]))
                kwargs.pop("pdb", None); kwargs.pop("xtra", None)
                res = main(**kwargs)
                code = 0 if res is None else res
            except SystemExit as e:  # as the interpreter maps `sys.exit(x)` to an exit status
                code = 0 if e.code is None else e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or 1)
    finally:
        sys.argv, sys.stdin = old[0], old[1]
        os.chdir(old[2]); torch.set_num_threads(old[3])
    return subprocess.CompletedProcess([script, *map(str, args)], code, out.getvalue(), err.getvalue())

@pytest.fixture(scope="session")
def hub_model_dir(tmp_path_factory) -> Path:
    """A miniature of the hub's google/flan-t5-base folder (`claim_t5.model.build_hub_like_model`: the hub's files and
    config keys, a SentencePiece tokenizer learned on the bundled training split, tiny random weights), built once."""
    from claim_t5.data import load_claim_data
    from claim_t5.model import build_hub_like_model
    train = load_claim_data(None)["train"]
    return build_hub_like_model(tmp_path_factory.mktemp("hub")/"flan-t5-mini", list(train["input"]) + list(train["output"]))

def free_port() -> int:
    "A free TCP port on loopback, for a service a test starts."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

WARNING = re.compile(r"warning|warn\(|deprecat", re.I)

def no_warnings(stderr:str):
    "Assert that no line of `stderr` (a command's) is a warning."
    found = [l for l in stderr.splitlines() if WARNING.search(l)]
    assert not found, "library warnings printed:\n" + "\n".join(found[:10])

@pytest.fixture(scope="module")
def local_ray():
    "A local Ray with 2 CPUs, quiet, for one test module (claim_t5's Ray functions use it and leave it running); shut down after."
    ray = pytest.importorskip("ray")
    from claim_t5.inference import ray_session
    with ray_session(cpus=2) as r: yield r
