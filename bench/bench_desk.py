"""Review desk benchmark: the page's first load, and one report's time to show in the page next to the service's own
one-client latency, both against `claim_t5_serve` (default engine and process) on 127.0.0.1, in headless Chromium
(Playwright, Debian's /usr/bin/chromium).

- first load: a fresh browser context each time (no cache), from navigation to the form built from /api/schema
  (`body[data-ready=true]`), and the browser's own load event; repeated, min/median/max.
- one report: the same claim sent by one client to POST /generate_claim (the service's one-client latency), and
  generated from the page (fill the form, press Generate: from the click to the marked report shown); repeated.
  Issue 21's target: the page's time <= the service's median + 100 ms.

- team (issue 29, `bench/_team.py`): 4 reviewers with keys of their own approve for 60 s while a 1,000-row batch job
  runs (a new one is uploaded whenever the last finishes: one runs throughout) and one client asks /generate_claim for one report at a time; the generation child is killed (SIGKILL) at 30 s.
  Targets: every acknowledged review stored once under its own reviewer, 0 interactive 503s while the batch runs, the
  interactive p99 within 2x the idle p99.

Run: .venv/bin/python bench/bench_desk.py --model_dir runs/tiny/model_training/fine_tuned_model [--repeats 20]
     [--screenshot docs/desk.png]   (also saves the page with a report, for the README)
     [--scenario page|team|both] [--seconds 60] [--kill_at 30] [--rows 1000] [--one_batch] [--serve_args=--shared_batch]
Writes bench/results/bench_desk-<date>.json. Asserts nothing.
"""
import argparse, json, os, shlex, socket, statistics, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment, save_result, spread  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def start_service(model_dir:str, threads:int, extra=(), key:str|None=None) -> tuple:
    "claim_t5_serve (its defaults: engine auto, a generation process) in a subprocess, ready: (process, url)."
    import httpx
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(Path(os.environ.get("TMPDIR", "/tmp"))/f"bench_desk_{port}.log", "w+")
    p = subprocess.Popen([sys.executable, "-m", "claim_t5.serve", "--model_dir", str(model_dir), "--port", str(port),
                          "--threads", str(threads), *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
    url, end = f"http://127.0.0.1:{port}", time.time() + 300
    while time.time() < end:
        if p.poll() is not None: log.seek(0); raise RuntimeError(f"service exited: {log.read()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=1, headers={"X-API-Key": key} if key else {}).status_code == 200: return p, url
        except httpx.HTTPError: pass
        time.sleep(0.2)
    raise RuntimeError("service not ready after 300 s")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--screenshot", default=None, help="also save the page with a report here (e.g. docs/desk.png)")
    ap.add_argument("--scenario", choices=["page", "team", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=60); ap.add_argument("--kill_at", type=float, default=30)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--review_pause", type=float, default=0.0, help="seconds each reviewer waits between reviews (0: closed loop)")
    ap.add_argument("--serve_args", default="", help="more claim_t5_serve options for the service, e.g. --shared_batch")
    ap.add_argument("--one_batch", action="store_true", help="team: one batch job only (default: a new one whenever the last finishes, so one runs throughout)")
    ap.add_argument("--batch_only_s", type=float, default=10.0, help="seconds of the batch job and one client alone, before the reviewers")
    a = ap.parse_args()
    if a.scenario == "team": return save_team(a)
    import httpx
    from playwright.sync_api import sync_playwright
    from claim_t5.data import load_claim_data
    from claim_t5.schema import parse_metadata
    from claim_t5.folders import load_model_config
    claims = [parse_metadata(r["input"]) for r in load_claim_data()["test"].select(range(a.repeats))]
    env = environment()
    proc, url = start_service(a.model_dir, a.threads)
    try:
        health = httpx.get(url + "/status").json()
        for m in claims[:3]: httpx.post(url + "/generate_claim", json=m, timeout=60)  # warm up
        service = []
        for m in claims:
            t0 = time.perf_counter(); r = httpx.post(url + "/generate_claim", json=m, timeout=60); service.append(time.perf_counter() - t0)
            r.raise_for_status()
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ready, onload = [], []
            for i in range(a.repeats + 1):  # the first, with the browser's own start-up, is left out
                ctx = b.new_context(); page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(url + "/"); page.wait_for_selector("body[data-ready=true]", state="attached")
                dt = time.perf_counter() - t0
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                if i: ready.append(dt); onload.append(nav / 1000)
                ctx.close()
            ctx = b.new_context(viewport={"width": 1200, "height": 900}); page = ctx.new_page()
            page.goto(url + "/"); page.wait_for_selector("body[data-ready=true]", state="attached")
            shown = []
            for i, m in enumerate([claims[0]] * 2 + claims):  # two warm-up drafts
                page.click("#clear-form")
                for k, v in m.items(): page.fill(f"#f-{k}", v)
                page.evaluate("document.body.dataset.lastDraftMs = ''")
                t0 = time.perf_counter()
                page.click("#generate")
                page.wait_for_function(f"document.body.dataset.lastDraftMs !== '' && document.getElementById('review-input').textContent.includes({json.dumps(m['shipment_id'])})")
                if i >= 2: shown.append(time.perf_counter() - t0)
            if a.screenshot:
                Path(a.screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=a.screenshot, full_page=True)
            b.close()
    finally:
        proc.terminate(); proc.wait(30)
    cfg = load_model_config(a.model_dir)
    ms = lambda xs: spread([x * 1000 for x in xs], 1)
    res = dict(benchmark="bench_desk", model=cfg.model_label, tiny=cfg.is_tiny, model_dir=str(a.model_dir), engine=health.get("engine"),
               process=health.get("process"), generation=health.get("generation"), repeats=a.repeats,
               first_load_ms=ms(ready), first_load_onload_ms=ms(onload),
               service_one_client_ms=ms(service), page_report_ms=ms(shown),
               page_minus_service_median_ms=round((statistics.median(shown) - statistics.median(service)) * 1000, 1),
               targets=dict(first_load_ms=1000, page_report_over_service_ms=100), environment=env)
    res["meets"] = dict(first_load=res["first_load_ms"]["median"] <= 1000, report=res["page_minus_service_median_ms"] <= 100)
    if a.scenario == "both": res["team"] = team(a)
    path = save_result("bench_desk", res)
    print(json.dumps({k: v for k, v in res.items() if k != "environment"}, indent=1))
    print(f"saved {path}")

def team(a) -> dict:
    "The team scenario (bench/_team.py) with the machine's load before and after."
    import tempfile
    from _team import team_run
    load = lambda: dict(zip(("1min", "5min", "15min"), os.getloadavg()))
    before = load()
    with tempfile.TemporaryDirectory() as d:
        svc = lambda m, t, extra=(), key=None: start_service(m, t, (*extra, *shlex.split(a.serve_args)), key)
        res = team_run(svc, a.model_dir, a.threads, a.seconds, a.kill_at, a.rows, work=Path(d), review_pause=a.review_pause,
                       batch_only_s=a.batch_only_s, keep_batch=not a.one_batch)
    res["load_before"], res["load_after"], res["cpus"] = before, load(), os.cpu_count()
    res["serve_args"] = a.serve_args
    return res

def save_team(a):
    res = dict(benchmark="bench_desk", scenario="team", model_dir=str(a.model_dir), team=team(a), environment=environment())
    path = save_result("bench_desk", res)
    print(json.dumps(res["team"], indent=1))
    print(f"saved {path}")

if __name__ == "__main__":
    main()
