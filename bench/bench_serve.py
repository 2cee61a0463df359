"""Service benchmark: `claim_t5_serve` on 127.0.0.1, driven by 1, 8 and 32 concurrent clients (each a closed loop: send,
wait for the answer, send the next), next to the offline batched throughput of the same model in the same run; then an
overload run (a burst of 200 clients against a queue of 64: only 200 or 503 answers, none hung, the service alive
after) and a graceful-shutdown run (SIGTERM while requests are in flight: every accepted request answered). Each load
level is bounded in requests and in time, warmed up, and repeated (min/median/max). Asserts nothing; prints figures and
writes bench/results/bench_serve.json.

Run: .venv/bin/python bench/bench_serve.py --model_dir runs/tiny/model_training/fine_tuned_model
     [--clients 1,8,32] [--repeats 3] [--threads 1] [--engine auto|transformers|ct2] [--compute_type float32|int8] [--in_thread]
The service generates in a separate process (its default); --in_thread measures generation in the server's own thread.
"""
import argparse, asyncio, json, os, platform, signal, socket, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def pct(xs: list, p: float) -> float:
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def spread(xs: list) -> dict:
    return dict(min=round(min(xs), 4), median=round(statistics.median(xs), 4), max=round(max(xs), 4))


class Service:
    "`python -m claim_t5.serve` in a subprocess on 127.0.0.1, started and ready, or stopped."
    def __init__(self, model_dir, threads, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp"))/f"bench_serve_{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "claim_t5.serve", "--model_dir", str(model_dir), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--threads", str(threads),
                                      "--reviews", str(Path(os.environ.get("TMPDIR", "/tmp"))/f"bench_serve_{self.port}.sqlite"), *map(str, extra)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        import httpx
        end = time.time() + 180
        while time.time() < end:
            if self.proc.poll() is not None: raise RuntimeError(f"service exited: {self.tail()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200: return
            except httpx.HTTPError: pass
            time.sleep(0.2)
        raise RuntimeError(f"service not ready after 180 s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush(); self.log.seek(0); return self.log.read()[-2000:]

    def stop(self, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(timeout)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        return self.proc.returncode


class Conn:
    """One HTTP/1.1 keep-alive connection on asyncio streams. The load generator does not use httpx: its async client
    managed 57 requests/s against a no-op FastAPI endpoint on this machine (32 concurrent), raw streams 1134/s."""
    def __init__(self, port: int): self.port, self.r, self.w = port, None, None

    async def post(self, path: str, obj, close: bool = False) -> tuple:
        "(status, headers, parsed JSON body)."
        if self.w is None: self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(obj).encode()
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode() + body)
        await self.w.drain()
        head = (await self.r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in head[1:] if ":" in l)}
        data = await self.r.readexactly(int(headers.get("content-length", 0)))
        if close or headers.get("connection") == "close": await self.close()
        return status, headers, json.loads(data) if data else None

    async def close(self):
        if self.w is not None:
            self.w.close()
            try: await self.w.wait_closed()
            except OSError: pass
        self.r = self.w = None


async def drive(port: int, claims: list, clients: int, max_requests: int, max_seconds: float, timeout: float = 60) -> dict:
    "`clients` closed-loop clients until `max_requests` are answered or `max_seconds` pass; latency of each request."
    lat, codes, errors, next_i = [], {}, [], [0]
    stop_at = time.perf_counter() + max_seconds
    async def client():
        c = Conn(port)
        while next_i[0] < max_requests and time.perf_counter() < stop_at:
            i = next_i[0]; next_i[0] += 1
            claim = claims[i % len(claims)]
            t0 = time.perf_counter()
            try:
                status, _, body = await asyncio.wait_for(c.post("/generate_claim", claim), timeout)
                codes[status] = codes.get(status, 0) + 1
                if status == 200:
                    if claim["shipment_id"] not in body["input"]: errors.append(f"mix-up at request {i}")
                    lat.append(time.perf_counter() - t0)
                else: errors.append(f"{status}: {str(body)[:100]}")
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                errors.append(f"{type(e).__name__}: {e}"); await c.close()
        await c.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return dict(answered=len(lat), seconds=wall, reports_per_s=len(lat) / wall, p50_s=pct(lat, 50) if lat else None,
                p99_s=pct(lat, 99) if lat else None, codes=codes, errors=len(errors), error_samples=errors[:3])


async def burst(port: int, claims: list, clients: int, timeout: float) -> dict:
    "`clients` requests sent at once, one each on its own connection: status codes, and how many got no answer in `timeout`."
    async def one(i):
        t0, c = time.perf_counter(), Conn(port)
        try:
            status, headers, _ = await asyncio.wait_for(c.post("/generate_claim", claims[i % len(claims)], close=True), timeout)
            return status, time.perf_counter() - t0, headers.get("retry-after")
        except asyncio.TimeoutError: return "hung", time.perf_counter() - t0, None
        except (OSError, asyncio.IncompleteReadError) as e: return type(e).__name__, time.perf_counter() - t0, None
        finally: await c.close()
    res = await asyncio.gather(*(one(i) for i in range(clients)))
    codes = {}
    for code, _, _ in res: codes[str(code)] = codes.get(str(code), 0) + 1
    t503 = [t for code, t, _ in res if code == 503]
    return dict(codes=codes, hung=codes.get("hung", 0), max_503_seconds=round(max(t503), 3) if t503 else None,
                retry_after=sorted({ra for code, _, ra in res if code == 503}))


def env_info(threads: int) -> dict:
    import torch, transformers, fastapi, uvicorn
    try: import ctranslate2; ct2 = ctranslate2.__version__
    except ImportError: ct2 = None
    try: commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: commit = None
    return dict(machine=platform.processor() or platform.machine(), cores=os.cpu_count(), torch_threads=threads,
                python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                fastapi=fastapi.__version__, uvicorn=uvicorn.__version__, ctranslate2=ct2, git_commit=commit,
                date=time.strftime("%Y-%m-%d %H:%M:%S"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels")
    ap.add_argument("--requests", type=int, default=0, help="requests per repeat and level (default: 40 x clients, at least 60)")
    ap.add_argument("--max_seconds", type=float, default=20, help="time cap per repeat and level")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--offline_n", type=int, default=662, help="test inputs for the offline batched run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the service and the offline run")
    ap.add_argument("--engine", default="auto", help="auto (the service default), transformers or ct2"); ap.add_argument("--compute_type", default="float32")
    ap.add_argument("--batch_size", type=int, default=32, help="service micro-batch size")
    ap.add_argument("--max_wait_ms", type=float, default=20)
    ap.add_argument("--in_thread", action="store_true", help="the service generates in its own thread, not a separate process")
    ap.add_argument("--overload_clients", type=int, default=200); ap.add_argument("--queue", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT/"bench"/"results"/"bench_serve.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(ROOT))
    from claim_t5.data import load_claim_data
    from claim_t5.schema import parse_metadata
    from claim_t5.inference import ClaimReportGenerator
    test_inputs = list(load_claim_data()["test"]["input"])
    offline_inputs = test_inputs[:a.offline_n]
    claims = [parse_metadata(x) for x in test_inputs]
    info = env_info(a.threads)
    load_before = os.getloadavg()  # the machine may be shared: the load says how far to trust the figures
    print("environment:", json.dumps(info))

    # offline batched throughput of the same model, same engine and threads, the service not running
    gen = ClaimReportGenerator(a.model_dir, device="cpu", batch_size=64, engine=a.engine, compute_type=a.compute_type)
    engine = gen.engine  # what `auto` chose
    print(f"model: {gen.cfg.model_label} ({a.model_dir}), engine {a.engine} -> {engine}/{a.compute_type}, generation {gen.gen_kwargs}")
    gen(test_inputs[:64])  # warm-up
    off = []
    for _ in range(a.repeats):
        t0 = time.perf_counter(); gen(offline_inputs); off.append(len(offline_inputs) / (time.perf_counter() - t0))
    offline = spread(off)
    print(f"offline batched generator: {offline['median']:.1f} reports/s (min {offline['min']:.1f}, max {offline['max']:.1f}; "
          f"{len(offline_inputs)} inputs, batch 64)")
    del gen

    extra = ["--engine", a.engine, "--compute_type", a.compute_type, "--batch_size", a.batch_size,
             "--max_wait_ms", a.max_wait_ms, "--max_queue", a.queue] + (["--in_thread"] if a.in_thread else [])
    generation = "in-thread" if a.in_thread else "separate process"
    print(f"service generation: {generation}")
    svc = Service(a.model_dir, a.threads, extra)
    levels = {}
    try:
        import httpx
        served = httpx.get(svc.url + "/status", timeout=5).json()["engine"]
        print(f"service engine: {served}")
        assert served == engine, f"the service runs {served}, the offline run {engine}: not the same comparison"
        asyncio.run(drive(svc.port, claims, 8, 64, 30))  # warm-up
        for n in [int(x) for x in a.clients.split(",")]:
            reqs = a.requests or max(60, 40 * n)
            runs = [asyncio.run(drive(svc.port, claims, n, reqs, a.max_seconds)) for _ in range(a.repeats)]
            lv = dict(clients=n, requests_per_repeat=reqs, reports_per_s=spread([r["reports_per_s"] for r in runs]),
                      p50_s=spread([r["p50_s"] for r in runs]), p99_s=spread([r["p99_s"] for r in runs]),
                      errors=sum(r["errors"] for r in runs), codes=[r["codes"] for r in runs],
                      error_samples=[s for r in runs for s in r["error_samples"]][:3])
            lv["share_of_offline"] = round(lv["reports_per_s"]["median"] / offline["median"], 3)
            levels[n] = lv
            print(f"{n:>3} clients: {lv['reports_per_s']['median']:7.1f} reports/s "
                  f"(min {lv['reports_per_s']['min']:.1f}, max {lv['reports_per_s']['max']:.1f}; "
                  f"{100 * lv['share_of_offline']:.0f}% of offline), p50 {1000 * lv['p50_s']['median']:.0f} ms, "
                  f"p99 {1000 * lv['p99_s']['median']:.0f} ms (max {1000 * lv['p99_s']['max']:.0f}), errors {lv['errors']}")
        metrics = [l for l in __import__("httpx").get(svc.url + "/metrics").text.splitlines()
                   if l.startswith(("claim_t5_batch_size_sum", "claim_t5_batch_size_count"))]
        print("service batches:", "; ".join(metrics))
    finally:
        rc = svc.stop()
    print(f"service stopped with exit code {rc} (-15: SIGTERM, re-raised by uvicorn after a graceful shutdown)")

    # overload: a burst against a queue of `queue`, one report per batch slot at most
    svc = Service(a.model_dir, a.threads, extra)
    try:
        asyncio.run(drive(svc.port, claims, 4, 16, 30))  # warm-up
        over = asyncio.run(burst(svc.port, claims, a.overload_clients, timeout=60))
        import httpx
        over["alive_after"] = httpx.get(svc.url + "/health", timeout=5).status_code == 200 and \
            httpx.post(svc.url + "/generate_claim", json=claims[0], timeout=30).status_code == 200
        print(f"overload, {a.overload_clients} clients at once vs queue {a.queue}: {over['codes']}, hung {over['hung']}, "
              f"slowest 503 {over['max_503_seconds']} s, Retry-After {over['retry_after']}, alive after: {over['alive_after']}")
        # graceful shutdown: SIGTERM while 32 requests are in flight; each accepted request must still be answered
        async def shutdown_run():
            import httpx
            task = asyncio.create_task(burst(svc.port, claims, 32, timeout=60))
            async with httpx.AsyncClient(base_url=svc.url) as c:  # SIGTERM once requests wait behind a running batch
                for _ in range(500):
                    m = (await c.get("/metrics")).text
                    if any(l.startswith("claim_t5_queue_reports ") and float(l.split()[1]) > 0 for l in m.splitlines()): break
                    await asyncio.sleep(0.01)
            svc.proc.send_signal(signal.SIGTERM)
            return await task
        down = asyncio.run(shutdown_run())
        down["exit_code"] = svc.proc.wait(60)
        print(f"SIGTERM with 32 requests in flight: {down['codes']} (a connection error = closed before its request was "
              f"read), exit code {down['exit_code']} (uvicorn re-raises SIGTERM after its graceful shutdown: -15)")
    finally:
        svc.stop()

    res = dict(benchmark="bench_serve", environment=info, model=str(a.model_dir), engine=engine, engine_requested=a.engine, compute_type=a.compute_type,
               service=dict(batch_size=a.batch_size, max_wait_ms=a.max_wait_ms, max_queue=a.queue, generation=generation),
               load_average_before=load_before, load_average_after=os.getloadavg(),
               offline_reports_per_s=offline, levels=levels, overload=over, shutdown=down, repeats=a.repeats)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
