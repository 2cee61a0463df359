"Shared fixtures and helpers: one torch thread, a tiny model trained for a few steps once per session, CLI helpers."
import contextlib, io, json, os, re, shutil, signal, socket, subprocess, sys, time, warnings
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
    """A miniature of the hub's google/flan-t5-base folder (`tests/hub_like.build_hub_like_model`: the hub's files and
    config keys, a SentencePiece tokenizer learned on the bundled training split, tiny random weights), built once."""
    from claim_t5.data import load_claim_data
    from hub_like import build_hub_like_model
    train = load_claim_data(None)["train"]
    return build_hub_like_model(tmp_path_factory.mktemp("hub")/"flan-t5-mini", list(train["input"]) + list(train["output"]))

# The small run every preset makes through `claim_t5_run` (tests/test_presets_matrix.py; test_pipeline.py asks it too).
PRESETS = sorted(p.stem for p in (Path(__import__("claim_t5").__file__).parent/"presets").glob("*.yaml"))
PRESET_SMALL = dict(num_epochs=2, max_train_samples=48, max_eval_samples=4, logging_steps=1, batch_size=8, eval_batch_size=8)
PRESET_TEST_SAMPLES = 12  # more than the 10 sample reports 04_inference writes at most: a short run writes 10

def preset_sets(preset:str, hub_model_dir:Path, **extra) -> str:
    "The --set string for a small run of `preset` (flan-t5-base from the miniature hub folder)."
    keys = {**PRESET_SMALL, **extra, **({"model_name": hub_model_dir} if preset == "flan-t5-base" else {})}
    return " ".join(f"{k}={v}" for k, v in keys.items())

@pytest.fixture(scope="session")
def preset_runs(tmp_path_factory, hub_model_dir):
    """`preset_runs(preset)`: `claim_t5_run --config <preset>` on the bundled data, small, in a fresh process started
    from another folder; made once per test session and preset, shared by the pytest-xdist workers (the first to ask
    runs it under a file lock, the others wait and read what it left), as xdist's docs do for session fixtures."""
    import filelock
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"): shared = shared.parent  # the workers' common base folder
    def run(preset:str) -> dict:
        base = shared/f"matrix-{preset}"
        run_dir, done = base/"run", shared/f"matrix-{preset}.json"
        with filelock.FileLock(str(shared/f"matrix-{preset}.lock")):
            if not done.exists():
                elsewhere = base/"elsewhere"; elsewhere.mkdir(parents=True)
                r = cli_subprocess("claim_t5_run", "--config", preset, "--run_dir", run_dir, "--set", preset_sets(preset, hub_model_dir),
                                   "--max_test_samples", PRESET_TEST_SAMPLES, cwd=elsewhere, timeout=900)
                done.write_text(json.dumps(dict(args=r.args, returncode=r.returncode, stdout=r.stdout, stderr=r.stderr)))
        r = subprocess.CompletedProcess(**json.loads(done.read_text()))
        return dict(preset=preset, base=base, elsewhere=base/"elsewhere", run=r, run_dir=run_dir,
                    model_dir=run_dir/"model_training"/"fine_tuned_model")
    return run

def free_port() -> int:
    "A free TCP port on loopback, for a service a test starts."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def serve_and_ask(model_dir, cwd, ask, *args, timeout:int=180) -> dict:
    """Start `claim_t5_serve` on `model_dir` (a fresh process in `cwd`), call `ask(url)` once it is ready (its dict is
    returned), stop the service; with the service's stderr and exit code. A service that never gets ready returns
    without `ask`'s keys."""
    import httpx
    port = free_port()
    p = subprocess.Popen([str(BIN/"claim_t5_serve"), "--model_dir", str(model_dir), "--port", str(port), *map(str, args)],
                         cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    res, url, end = {}, f"http://127.0.0.1:{port}", time.monotonic() + timeout
    try:
        while time.monotonic() < end and p.poll() is None:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200: res.update(ask(url)); break
            except httpx.TransportError: pass
            time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGINT)
        try: out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired: p.kill(); out, err = p.communicate()
    return dict(res, returncode=p.returncode, stdout=out, stderr=err)

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

# ---------------------------------------------------------------- what was skipped, and the one command that installs it
# A fresh machine skips the browser, PostgreSQL and shared-data tests; "23 skipped" alone does not say why or what to do.
SKIP_CAUSES = [  # (pattern in the skip reason, what is missing, the command that installs it)
    (re.compile(r"chromium|playwright", re.I), "no /usr/bin/chromium (or no playwright package)",
     "sudo apt-get install -y chromium  (playwright: pip install -c constraints.txt -e '.[dev]')"),
    (re.compile(r"postgres|initdb", re.I), "no PostgreSQL (initdb, pg_ctl)", "sudo apt-get install -y postgresql"),
    (re.compile(r"shared.datasets|human-written datasets", re.I), "no ../shared/datasets beside the clone",
     "put the shared datasets folder (rnnlg_tv, rnnlg_laptop) at ../shared/datasets"),
    (re.compile(r"ctranslate2", re.I), "no ctranslate2 (the `fast` extra)", "pip install -c constraints.txt -e '.[fast]'"),
]

def _skip_reason(report) -> str:
    "The reason a skipped test report gives (pytest keeps it as (file, line, 'Skipped: reason'))."
    lr = report.longrepr
    reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return reason.removeprefix("Skipped: ")

def skip_summary(reasons:list) -> list:
    "Lines that group skip `reasons` by what is missing, each with its count and the command that installs it."
    groups = {}
    for r in reasons:
        cause = next(((what, cmd) for pat, what, cmd in SKIP_CAUSES if pat.search(r)), (r, None))
        groups[cause] = groups.get(cause, 0) + 1
    lines = [f"{n:4d} skipped: {what}" + (f"  ->  {cmd}" if cmd else "") for (what, cmd), n in
             sorted(groups.items(), key=lambda kv: -kv[1])]
    apt = [p for p in ("chromium", "postgresql") if any(cmd and f"install -y {p}" in cmd for (_, cmd) in groups)]
    if apt: lines.append(f"     all the system packages at once: sudo apt-get install -y {' '.join(apt)}  (.ci/run does it)")
    return lines

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    "After the run, name what was skipped and why, grouped, with the command that installs what the tests need."
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if getattr(r, "longrepr", None)]
    if not skipped: return
    terminalreporter.section("what was skipped, and how to run it")
    for line in skip_summary([_skip_reason(r) for r in skipped]): terminalreporter.write_line(line)
