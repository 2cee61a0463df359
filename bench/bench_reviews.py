"""Review durability benchmark: 4 reviewers approve reports at once through `claim_t5_serve`'s HTTP API for 60 s; the
service is killed with SIGKILL mid-run and started again on the same database; each client retries a request whose
answer it lost, with the same request_id. Afterwards every acknowledged review must be in the database exactly once
and nothing may be stored twice. Writes bench/results/bench_reviews-<date>.json.

Run: .venv/bin/python bench/bench_reviews.py [--model_dir DIR] [--seconds 60] [--kill_at 30] [--reviews URL_OR_PATH]
(without --model_dir a seconds-long tiny model is trained first; its reports are the tiny model's)."""
import argparse, os, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, threading, time, uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment, save_result  # noqa: E402

KEY = "bench-key-0123456789-abcdefghijklmnop"  # 32+ characters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class Service:
    "`claim_t5.serve` (--in_thread or a generation process) on 127.0.0.1:`port` with an API key, storing reviews in `reviews`."
    def __init__(self, model_dir, reviews, port, log, extra=()):
        import httpx
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "CLAIM_T5_API_KEY": KEY,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "claim_t5.serve", "--model_dir", str(model_dir), "--port", str(port),
                                      "--reviews", str(reviews), "--threads", "1", *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
        while time.monotonic() - t0 < 180:
            if self.proc.poll() is not None: raise RuntimeError(f"the service exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(self.url + "/ready", headers={"X-API-Key": KEY}, timeout=2).status_code == 200: break
            except httpx.HTTPError: pass
            time.sleep(0.1)
        else: raise RuntimeError("the service did not get ready in 180 s")
        self.ready_s = time.monotonic() - t0

    def kill9(self): os.kill(self.proc.pid, signal.SIGKILL); self.proc.wait(10)
    def stop(self): self.proc.terminate(); self.proc.wait(30)


def reviewer(k:int, url:str, end:float, out:dict, lock):
    "Approve reports in a closed loop until `end`; a request whose answer is lost is sent again, same request_id, until answered."
    import httpx
    i = 0
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
        while time.monotonic() < end:
            rid = f"b{k}-{uuid.uuid4().hex}"
            body = {"input": f"shipment_id=SHP-{k}{i:06d}; damage_type=dent; severity=high", "generated": f"Shipment SHP-{k}{i:06d} has a dent.",
                    "final": f"Shipment SHP-{k}{i:06d} has a dent; severity high.", "decision": "approved", "reviewer": f"reviewer {k}",
                    "request_id": rid}
            tries = 0
            while True:
                t0 = time.perf_counter(); tries += 1
                try: r = c.post("/api/reviews", json=body)
                except httpx.HTTPError:  # the service is down: saved or not, this client does not know; it retries
                    if time.monotonic() > end + 120: break
                    time.sleep(0.1); continue
                with lock:
                    if r.status_code in (200, 201):
                        out["acked"].append(rid); out["latency_s"].append(time.perf_counter() - t0)
                        if tries > 1: out["retried"].append((rid, r.status_code))
                    else: out["other"].append((r.status_code, r.text[:200]))
                break
            with lock: out["sent"].add(rid)
            i += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model_dir", help="fine_tuned_model/ folder; default: train a seconds-long tiny model")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill_at", type=float, default=30.0, help="seconds into the run when the service gets SIGKILL")
    ap.add_argument("--reviewers", type=int, default=4)
    ap.add_argument("--process", action="store_true", help="generate in a separate process (default: --in_thread)")
    ap.add_argument("--reviews", help="the store (a SQLite path); default: a new file in a temp folder")
    a = ap.parse_args()
    info = environment()
    tmp = Path(tempfile.mkdtemp(prefix="bench_reviews_"))
    model_dir = a.model_dir
    if model_dir is None:
        from claim_t5.config import quick_config
        from claim_t5.train import train
        model_dir = str(train(quick_config(tmp/"model_training"), verbose=False).model_dir)
    db = Path(a.reviews or tmp/"reviews.sqlite")
    port, log = free_port(), open(tmp/"service.log", "w+")
    extra = () if a.process else ("--in_thread",)
    out, lock = dict(acked=[], latency_s=[], retried=[], other=[], sent=set()), threading.Lock()
    svc = Service(model_dir, db, port, log, extra)
    t_start = time.monotonic(); end = t_start + a.seconds
    ts = [threading.Thread(target=reviewer, args=(k, svc.url, end, out, lock)) for k in range(a.reviewers)]
    for t in ts: t.start()
    time.sleep(max(0, t_start + a.kill_at - time.monotonic()))
    with lock: acked_before_kill = len(out["acked"])
    svc.kill9(); killed_at = time.monotonic() - t_start
    print(f"SIGKILL at {killed_at:.1f} s after {acked_before_kill} acknowledged reviews; starting the service again")
    svc = Service(model_dir, db, port, log, extra)
    print(f"service ready again after {svc.ready_s:.1f} s")
    for t in ts: t.join()
    svc.stop()
    con = sqlite3.connect(db)
    counts = dict(con.execute("SELECT request_id, count(*) FROM reviews GROUP BY request_id").fetchall())
    rows = con.execute("SELECT count(*) FROM reviews").fetchone()[0]; con.close()
    acked = out["acked"]
    lost = [r for r in acked if counts.get(r, 0) == 0]
    twice = [r for r, n in counts.items() if n > 1]
    unknown = [r for r in counts if r not in out["sent"]]
    lat = sorted(out["latency_s"])
    res = dict(benchmark="bench_reviews", environment=info, model=str(model_dir), model_note="a seconds-trained tiny model" if a.model_dir is None else None,
               store=f"SQLite {db.name} (WAL, synchronous=FULL)", service="in-thread" if not a.process else "generation process",
               reviewers=a.reviewers, seconds=a.seconds, killed_at_s=round(killed_at, 1), restart_ready_s=round(svc.ready_s, 1),
               acknowledged=len(acked), acknowledged_before_kill=acked_before_kill, rows_in_db=rows,
               answered_after_a_retry=len(out["retried"]), retried_already_stored=sum(1 for _, s in out["retried"] if s == 200),
               acknowledged_missing=len(lost), stored_twice=len(twice), rows_not_sent=len(unknown), other_answers=out["other"][:5],
               approvals_per_s=round(len(acked) / a.seconds, 1),
               latency_ms=dict(p50=round(1000 * statistics.median(lat), 1), p99=round(1000 * lat[int(0.99 * (len(lat) - 1))], 1),
                               max=round(1000 * lat[-1], 1)) if lat else None,
               ok=not lost and not twice and not out["other"])
    path = save_result("bench_reviews", res)
    print(f"{len(acked)} reviews acknowledged ({res['approvals_per_s']}/s), {rows} rows; acknowledged but missing: {len(lost)}, "
          f"stored twice: {len(twice)}; after a retry: {len(out['retried'])} ({res['retried_already_stored']} had been stored before the kill)")
    print(f"wrote {path}")
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
