"""The team scenario of bench_desk.py (issue 29): 4 reviewers, each with a key of their own, approve reports for 60 s
while a 1,000-row batch job runs and one client asks /generate_claim for one report at a time; the generation child is
killed with SIGKILL at 30 s. A 1,000-row batch job runs the whole time: when one finishes, the watcher uploads the
next (`--one_batch`: only the first). Afterwards: every acknowledged review is in the database once, under its own reviewer;
the interactive client's 503s while the batch ran; its p99 against the idle p99 measured first."""
import os, signal, sqlite3, statistics, subprocess, sys, threading, time, uuid
from pathlib import Path


def p99(xs:list) -> float|None:
    xs = sorted(xs)
    return None if not xs else xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def metric_sums(text:str) -> dict:
    "The /metrics lines this scenario splits its time by: name{labels} -> value, for the _sum/_count/_bucket series."
    out = {}
    for line in text.splitlines():
        if line.startswith(("claim_t5_request_seconds", "claim_t5_batch_seconds", "claim_t5_batch_size")) and not line.startswith("#"):
            k, v = line.rsplit(" ", 1); out[k] = float(v)
    return out


def stages(before:dict, after:dict) -> dict:
    "Where the time went between two /metrics snapshots: server-side /generate_claim mean and the generation batches' mean time and size."
    d = lambda k: after.get(k, 0) - before.get(k, 0)
    per = lambda s, c: None if not d(c) else round(d(s) / d(c) * 1000, 2)
    gc = 'endpoint="/generate_claim"'
    return dict(server_generate_claim_mean_ms=per(f"claim_t5_request_seconds_sum{{{gc}}}", f"claim_t5_request_seconds_count{{{gc}}}"),
                server_generate_claim_requests=d(f"claim_t5_request_seconds_count{{{gc}}}"),
                generation_batch_mean_ms=per("claim_t5_batch_seconds_sum", "claim_t5_batch_seconds_count"),
                generation_batches=d("claim_t5_batch_seconds_count"),
                reports_per_generation=None if not d("claim_t5_batch_size_count") else round(d("claim_t5_batch_size_sum") / d("claim_t5_batch_size_count"), 2))


def cpu_seconds(pid:int) -> tuple:
    "(own, reaped children's) CPU seconds of a process, from /proc (Linux)."
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick


def cpu_use(server:int, child:int) -> dict:
    "CPU seconds so far: the service's own threads, its generation child(ren), this client process."
    own, reaped = cpu_seconds(server)
    t = os.times()
    return dict(server=own, generation=reaped + cpu_seconds(child)[0], clients=t.user + t.system)


def team_run(start_service, model_dir:str, threads:int, seconds:float=60, kill_at:float=30, rows:int=1000, idle_n:int=100, work:Path=None,
             review_pause:float=0.0, batch_only_s:float=10.0, keep_batch:bool=True) -> dict:
    "Run the scenario against a fresh service; its figures."
    import httpx
    from claim_t5.schema import format_metadata, parse_metadata
    from claim_t5.data import load_claim_data
    from claim_t5.serve import add_user
    work = Path(work)
    names = ["reviewer-1", "reviewer-2", "reviewer-3", "reviewer-4"]
    keys = {n: add_user(work/"users.yaml", n, "reviewer") for n in names}
    keys["boss"] = add_user(work/"users.yaml", "boss", "admin")
    db = work/"reviews.sqlite"
    proc, url = start_service(model_dir, threads, ("--users", str(work/"users.yaml"), "--reviews", str(db)), key=keys["boss"])
    test = load_claim_data()["test"]
    metas = [parse_metadata(test[i % len(test)]["input"]) for i in range(max(rows, idle_n + 10))]
    admin = {"X-API-Key": keys["boss"]}
    res = {}
    try:
        with httpx.Client(base_url=url, headers=admin, timeout=60) as c:
            for m in metas[:5]: c.post("/generate_claim", json=m)  # warm up
            idle, m0 = [], metric_sums(c.get("/metrics").text)
            for m in metas[5:5 + idle_n]:
                t0 = time.perf_counter(); r = c.post("/generate_claim", json=m); idle.append(time.perf_counter() - t0); r.raise_for_status()
            csv = "shipment_id,damage_type,severity,vendor,image_id,shipment_stage\n" + "".join(
                f"SHP-8{i:05d},{m.get('damage_type', '')},{m.get('severity', '')},{m.get('vendor', '')},{m.get('image_id', '')},{m.get('shipment_stage', '')}\n"
                for i, m in enumerate(metas[:rows]))
            m1 = metric_sums(c.get("/metrics").text)
            job = c.post("/api/batch?filename=day.csv", content=csv.encode(), headers={"content-type": "text/csv"}).json()
            assert "job" in job, job
            alone, t_end = [], time.monotonic() + batch_only_s  # the batch job and this one client, nothing else
            while time.monotonic() < t_end:
                m = {**metas[len(alone) % len(metas)], "shipment_id": f"SHP-7{len(alone):05d}"}
                t0 = time.perf_counter(); r = c.post("/generate_claim", json=m); alone.append((time.perf_counter() - t0, r.status_code))
            alone_running = c.get(f"/api/batch/{job['job']}").json()["rows"] is None
            m2 = metric_sums(c.get("/metrics").text)
            cpu0 = cpu_use(proc.pid, c.get("/status").json()["pid"])
        end, t_start = time.monotonic() + seconds, time.monotonic()
        lock, acked, odd, lost, finished = threading.Lock(), [], [], [], []
        inter, batch_done, killed, jobs = [], [None], {}, [job["job"]]  # batch_done[0]: None while a batch job runs
        def reviewer(name):
            with httpx.Client(base_url=url, headers={"X-API-Key": keys[name]}, timeout=30) as c:
                i = 0
                while time.monotonic() < end:
                    sid = f"SHP-{names.index(name) + 1}{i:05d}"
                    body = {"input": f"shipment_id={sid}; damage_type=dent; severity=high", "generated": f"Shipment {sid} has a dent.",
                            "final": f"Shipment {sid} has a dent; severity high.", "decision": "approved", "request_id": f"{name}-{uuid.uuid4().hex}",
                            "reviewer": "someone else"}  # ignored: the key names the reviewer
                    for attempt in range(5):  # a lost answer is retried with the same request_id
                        try: r = c.post("/api/reviews", json=body); break
                        except httpx.HTTPError: r = None; time.sleep(0.2)
                    with lock:
                        if r is None: lost.append(body["request_id"])
                        elif r.status_code in (200, 201): acked.append((body["request_id"], name))
                        else: odd.append((r.status_code, r.text[:200]))
                    i += 1
                    if review_pause: time.sleep(review_pause)
        def interactive():
            with httpx.Client(base_url=url, headers=admin, timeout=60) as c:
                i = 0
                while time.monotonic() < end:
                    m = {**metas[i % len(metas)], "shipment_id": f"SHP-9{i:05d}"}
                    t0 = time.perf_counter(); r = c.post("/generate_claim", json=m); t1 = time.perf_counter()
                    now = time.monotonic() - t_start
                    with lock: inter.append((now - (t1 - t0), t1 - t0, r.status_code, batch_done[0] is None, now))  # start, seconds, status, batch running, end
                    i += 1
        def watch():
            with httpx.Client(base_url=url, headers=admin, timeout=30) as c:
                while time.monotonic() < end and (batch_done[0] is None or "pid" not in killed):
                    if batch_done[0] is None:
                        s = c.get(f"/api/batch/{jobs[-1]}").json()
                        if s["rows"] is not None:
                            finished.append((round(time.monotonic() - t_start, 1), s["done"], s["error"]))
                            nxt = c.post("/api/batch?filename=day.csv", content=csv.encode(), headers={"content-type": "text/csv"}).json() if keep_batch else {}
                            if "job" in nxt: jobs.append(nxt["job"])
                            else: batch_done[0] = finished[-1]
                    if "pid" not in killed and time.monotonic() - t_start >= kill_at:
                        pid = c.get("/status").json()["pid"]; killed["at"] = time.monotonic() - t_start
                        os.kill(pid, signal.SIGKILL); killed["pid"] = pid
                    time.sleep(0.2)
        ts = [threading.Thread(target=reviewer, args=(n,)) for n in names] + [threading.Thread(target=interactive), threading.Thread(target=watch)]
        for t in ts: t.start()
        for t in ts: t.join()
        with httpx.Client(base_url=url, headers=admin, timeout=30) as c:
            s = c.get(f"/api/batch/{jobs[-1]}").json()
            m3 = metric_sums(c.get("/metrics").text)
            cpu1 = cpu_use(proc.pid, c.get("/status").json()["pid"])
            wall = time.monotonic() - t_start
            progress = dict(done=s["done"], total=s["total"], error=s["error"], seconds_since_upload=round(time.monotonic() - t_start + batch_only_s, 1))
        con = sqlite3.connect(db)
        stored = {rid: (who, n) for rid, who, n in con.execute("SELECT request_id, reviewer, count(*) FROM reviews GROUP BY request_id, reviewer")}
        con.close()
        wrong = [(rid, name, stored.get(rid)) for rid, name in acked if stored.get(rid) != (name, 1)]
        during = [x for x in inter if x[3]]  # while the batch ran
        k = killed.get("at", 1e9)  # the restart: from the kill until the first report after it was answered
        back = min((x[4] for x in inter if x[0] >= k and x[2] == 200), default=1e9)
        killed["first_report_after_s"] = None if back == 1e9 else round(back - k, 2)
        hit = [x for x in during if x[0] <= back and x[4] >= k]  # waited for the new generation process
        steady = [x for x in during if x not in hit and x[2] == 200]
        after = [x for x in inter if not x[3] and not (x[0] <= back and x[4] >= k) and x[2] == 200]  # the reviewers alone, the batch done
        ms = lambda s: None if s is None else round(s * 1000, 1)
        ok_alone = [d for d, st in alone if st == 200]
        res = dict(seconds=seconds, kill_at_s=kill_at, rows=rows, reviewers=len(names), review_pause_s=review_pause,
                   batch_only=dict(seconds=batch_only_s, requests=len(alone), status={str(x): sum(1 for _, st in alone if st == x) for x in sorted({st for _, st in alone})},
                                   p99_ms=ms(p99(ok_alone)), median_ms=ms(statistics.median(ok_alone)) if ok_alone else None, batch_still_running=alone_running),
                   cpu_cores_used=dict({k: round((cpu1[k] - cpu0[k]) / wall, 2) for k in cpu0}, wall_s=round(wall, 1)),
                   stages=dict(idle=stages(m0, m1), batch_only=stages(m1, m2), team=stages(m2, m3)),
                   acknowledged=len(acked), stored=len(stored), acknowledged_wrong_or_missing=len(wrong), wrong_examples=wrong[:5],
                   other_answers=len(odd), other_examples=odd[:5], lost_answers=len(lost),
                   reviews_by_reviewer={n: sum(1 for _, m in acked if m == n) for n in names},
                   child_killed=killed, batch_finished=batch_done[0], batch_jobs_finished=finished, batch_jobs=len(jobs), batch_at_end=progress,
                   interactive=dict(requests=len(inter), while_batch=len(during),
                                    status_while_batch={str(s): sum(1 for x in during if x[2] == s) for s in sorted({x[2] for x in during})},
                                    p99_idle_ms=ms(p99(idle)), median_idle_ms=ms(statistics.median(idle)),
                                    p99_while_batch_ms=ms(p99([x[1] for x in during if x[2] == 200])),
                                    p99_while_batch_outside_restart_ms=ms(p99([x[1] for x in steady])), waited_for_the_restart=len(hit),
                                    slowest_during_restart_ms=ms(max((x[1] for x in hit), default=None)),
                                    median_while_batch_ms=ms(statistics.median([x[1] for x in steady])) if steady else None,
                                    after_batch=len(after), p99_after_batch_outside_restart_ms=ms(p99([x[1] for x in after])),
                                    median_after_batch_ms=ms(statistics.median([x[1] for x in after])) if after else None))
        i = res["interactive"]
        res["meets"] = dict(every_ack_once_under_its_reviewer=not wrong and len(acked) > 0,
                            batch_alone_no_503=res["batch_only"]["status"].get("503", 0) == 0,
                            batch_alone_p99_within_2x_idle=res["batch_only"]["p99_ms"] is not None and res["batch_only"]["p99_ms"] <= 2 * i["p99_idle_ms"],
                            no_interactive_503=i["status_while_batch"].get("503", 0) == 0,
                            p99_within_2x_idle=i["p99_while_batch_outside_restart_ms"] is not None and i["p99_while_batch_outside_restart_ms"] <= 2 * i["p99_idle_ms"],
                            p99_within_2x_idle_with_restart=i["p99_while_batch_ms"] is not None and i["p99_while_batch_ms"] <= 2 * i["p99_idle_ms"])
    finally:
        proc.terminate(); proc.wait(30)
    return res
