"""What every benchmark here shares: the machine and versions it ran on, repeated timings summarised as min/median/max,
each measurement in a fresh process (so its peak RSS is its own), and a JSON result per run in bench/results/."""
import datetime, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/"bench"/"results"

def git_commit() -> str:
    "The checked-out commit, with '+dirty' when tracked files differ from it (the figures may not be that commit's)."
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError): return "unknown"

def environment() -> dict:
    "Machine, threads, load and library versions: what a reader needs to compare a figure with their own."
    import importlib.metadata as md
    import torch
    versions = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "datasets", "tokenizers", "rouge_score", "claim_t5"):
        try: versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError: versions[pkg] = None
    from claim_t5.model import machine_description  # the one description every stored figure carries
    return dict(machine=machine_description(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
                load_average_at_start=[round(x, 2) for x in os.getloadavg()], versions=versions, git_commit=git_commit(),
                date=datetime.datetime.now().isoformat(timespec="seconds"), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))

def spread(values:list, digits:int=2) -> dict:
    "min / median / max (and every value) of repeated measurements."
    return dict(min=round(min(values), digits), median=round(statistics.median(values), digits),
                max=round(max(values), digits), n=len(values), values=[round(v, digits) for v in values])

def peak_rss_mb() -> float:
    "This process's peak resident memory so far, in MB (Linux reports KB)."
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

def in_fresh_process(script:str|Path, job:str, **kwargs) -> dict:
    "Run `job` of `script` (its `--_job` entry) in a new Python process and return the JSON it prints last."
    cmd = [sys.executable, str(script), "--_job", job, "--_kwargs", json.dumps(kwargs)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0: raise RuntimeError(f"{job} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def job_main(jobs:dict) -> bool:
    "If this process was started by `in_fresh_process`, run the job, print its result as JSON and return True."
    if "--_job" not in sys.argv: return False
    import warnings; warnings.filterwarnings("ignore")  # the worker's stdout is parsed; library warnings go to stderr anyway
    name, kwargs = sys.argv[sys.argv.index("--_job") + 1], json.loads(sys.argv[sys.argv.index("--_kwargs") + 1])
    out = jobs[name](**kwargs)
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return True

def save_result(name:str, result:dict, out_dir:str|Path=RESULTS) -> Path:
    "Write `result` as bench/results/<name>-<date>.json and return the path."
    out_dir = Path(out_dir); out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir/f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path

class Timer:
    "with Timer() as t: ...; t.s is the elapsed wall time in seconds."
    def __enter__(self): self.t0 = time.perf_counter(); return self
    def __exit__(self, *exc): self.s = time.perf_counter() - self.t0
