"""LLM gateway overhead: direct calls to a fake provider vs our gateway vs the LiteLLM proxy.

All three serve the same OpenAI-compatible calls from the same loopback fake provider
(`tests.llm_fakes.FakeUpstream`, in its own process, first byte after a fixed delay):

* direct: the client calls the fake provider itself (the baseline);
* ours: `posthog_app.asgi:application` under uvicorn (DEBUG off, a fresh SECRET_KEY, a
  PostgreSQL bench database, Redis db 11), product `slack_app` (billable) with a server
  token minted for the bench project, whose organization has a plan with an AI-credit
  allowance: authentication, quota and credit throttles and metering all run;
* litellm: the LiteLLM proxy, installed by this script into its own virtualenv
  (.bench/litellm-venv), `openai/` model pointing at the fake provider. It is first tried
  with its own PostgreSQL database and a virtual key with a budget (its comparable work:
  key lookup, budget check, spend tracking); if that cannot start here (its Prisma client
  downloads engines at start), with the master key only and the output says so. Either
  way it gets the bench's Redis (REDIS_URL: its usage counters) and a proxy-wide budget
  (it prices every call), the nearest it comes offline to our throttles and metering.

Both servers run with the same number of worker processes. The client (threads, one
keep-alive connection each) sends the same requests at concurrency 32, non-streaming
(latency) and streaming (time to the first body bytes), in two phases:

* capacity: the provider answers after 20 ms, so every server is saturated; this gives
  throughput (target: ours at least 2x LiteLLM's). Latency here is queueing
  (>= 32 / throughput), reported but not the overhead a caller sees;
* model-paced: the provider answers after 300 ms, a small model's first token, so 32
  concurrent conversations offer the load they would in production; the added latency
  p50/p99 over direct in this phase is the overhead target (ours under 10 ms).

Sequential calls (one at a time) are reported too. Writes bench/results/llm_gateway.{json,txt}.

    .venv/bin/python bench/llm_gateway.py [--requests 1500] [--concurrency 32] [--delay-ms 20] [--model-delay-ms 300] [--workers 1]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
sys.path.insert(0, str(ROOT))

from bench.support import Figures, Turns, free_port, stop  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/posthog_bench_llm_gateway")
LITELLM_DATABASE_URL = os.environ.get("BENCH_LITELLM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/posthog_bench_litellm")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
MODEL = "gpt-4o-mini"
PRODUCT = "slack_app"
UPSTREAM_KEY = "sk-bench-upstream"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-" + secrets.token_hex(8)
PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]


# --- Processes --------------------------------------------------------------------------------


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: str | None = None) -> None:
    """Wait until `url` answers (any status), or the process dies, or `timeout` passes."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"process exited early with {proc.returncode}\n{tail}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def serve_fake_upstream(delay_ms: float) -> None:
    """Child mode: run the fake provider until killed, printing its base URL first."""
    from http.server import ThreadingHTTPServer

    from tests.llm_fakes import Defaults, FakeUpstream

    # http.server's defaults would measure the kernel, not the proxies: a listen backlog of
    # 5 drops SYNs from 32 concurrent clients (1 s retransmits), and headers and body sent
    # in two writes meet Nagle and delayed ACKs (40 ms). Real providers have neither.
    ThreadingHTTPServer.request_queue_size = 256
    fake = FakeUpstream(expected_key=UPSTREAM_KEY, defaults=Defaults(first_byte_delay=delay_ms / 1000))
    fake.server.RequestHandlerClass.disable_nagle_algorithm = True
    fake.calls = _NoList()  # a long run must not keep every request in memory
    print(fake.base_url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The parent sets a new first-byte delay (ms) by writing a line to our stdin, so both
    # passes use one provider process and the servers need no restart to be re-pointed.
    for line in sys.stdin:
        if line.strip():
            fake.defaults.first_byte_delay = float(line) / 1000
            print("ok", flush=True)
    while True:
        time.sleep(3600)


class _NoList(list):
    def append(self, item) -> None:  # noqa: D401 - forget calls
        pass


def start_fake_upstream(delay_ms: float, tmpdir: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake-upstream", str(delay_ms)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(tmpdir, "upstream.log"), "wb"), text=True,
        start_new_session=True,
    )
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http"):
        raise RuntimeError("the fake upstream did not start")
    return proc, base_url


def set_upstream_delay(proc: subprocess.Popen, delay_ms: float) -> None:
    proc.stdin.write(f"{delay_ms}\n")
    proc.stdin.flush()
    if proc.stdout.readline().strip() != "ok":
        raise RuntimeError("the fake upstream did not take the new delay")


# --- Ours ---------------------------------------------------------------------------------------


def our_env(upstream: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "posthog_app.settings",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "LLM_OPENAI_BASE_URL": upstream,
        "LLM_OPENAI_API_KEY": UPSTREAM_KEY,
        "LLM_ANTHROPIC_API_KEY": "",
        "LLM_GATEWAY_QUOTA_SOURCE": "redis",
        # As `make run` serves it: the gateway keeps its connections in pools of its own.
    }


def seed_ours(env: dict[str, str]) -> tuple[int, str]:
    """Migrate the bench database, make an organization with a plan and a project; return (project id, server token)."""
    os.environ.update({k: v for k, v in env.items() if k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "DEBUG",
                                                                "SECRET_KEY", "ALLOWED_HOSTS", "LOG_LEVEL")})
    from bench.support import ensure_postgres_database

    ensure_postgres_database(DATABASE_URL)
    import django

    django.setup()
    from datetime import timedelta

    from django.core.management import call_command

    from posthog_app.redis_client import get_client
    from products.accounts.models import Organization, Project
    from products.billing.models import BillingPlan, ResourceAllowance
    from products.llm_gateway.facade import mint_server_token

    call_command("migrate", verbosity=0, interactive=False)
    redis = get_client()
    if redis.connection_pool.connection_kwargs.get("db", 0) == 0:
        raise SystemExit("error: the benchmark flushes its Redis database; use one other than 0 (BENCH_REDIS_URL)")
    redis.flushdb()
    org = Organization.objects.create(name="LLM gateway bench org")
    plan = BillingPlan.objects.create(organization=org, name="bench")
    ResourceAllowance.objects.create(plan=plan, resource="ai_credits", allowance=10**12)
    project = Project.objects.create(organization=org, name="LLM gateway bench project")
    return project.pk, mint_server_token(project.pk, PRODUCT, ttl=timedelta(hours=2))


def count_usage_events(project_id: int) -> int:
    from products.billing.models import UsageEvent

    return UsageEvent.objects.filter(project_id=project_id).count()


def start_ours(env: dict[str, str], workers: int, tmpdir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = os.path.join(tmpdir, "gateway.log")
    proc = subprocess.Popen(
        [str(VENV_BIN / "uvicorn"), "posthog_app.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--lifespan", "off", "--no-access-log", "--log-level", "warning"],  # as `make run`
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/healthz", 60, proc, log)
    return proc, base


# --- LiteLLM ------------------------------------------------------------------------------------


def ensure_litellm() -> str:
    """Install the LiteLLM proxy into its own virtualenv (once); return its version."""
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print("installing litellm[proxy] into .bench/litellm-venv (once) ...", file=sys.stderr)
        LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        # prisma: the client LiteLLM's database features (virtual keys, budgets, spend) need.
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "litellm[proxy]", "prisma"],
                       check=True, stderr=subprocess.DEVNULL)
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def start_litellm(upstream: str, workers: int, tmpdir: str, *, database: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = os.path.join(tmpdir, f"litellm{'-db' if database else ''}.yaml")
    general = {"master_key": LITELLM_MASTER_KEY}
    if database:
        general["database_url"] = LITELLM_DATABASE_URL
    Path(config).write_text(json.dumps({  # YAML is a superset of JSON
        "model_list": [{"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{upstream}/v1",
                                                                 "api_key": UPSTREAM_KEY}}],
        # A proxy-wide budget: LiteLLM prices every call and checks the budget (in memory) even without its database.
        "litellm_settings": {"drop_params": True, "telemetry": False, "suppress_debug_info": True,
                             "max_budget": 1_000_000, "budget_duration": "30d"},
        "general_settings": general,
    }))
    env = {
        **os.environ,
        "PATH": f"{LITELLM_VENV / 'bin'}:{os.environ.get('PATH', '')}",  # its prisma CLI
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: the cost map it ships, no download
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY,
    }
    env.pop("DATABASE_URL", None)
    # Its per-key, per-user and per-model usage counters (the parallel request limiter) go to
    # Redis when REDIS_URL is set, as our throttles' windows do: the same server, the same db.
    env["REDIS_URL"] = REDIS_URL
    if database:
        env["DATABASE_URL"] = LITELLM_DATABASE_URL
    log = os.path.join(tmpdir, f"litellm{'-db' if database else ''}.log")
    proc = subprocess.Popen(
        [str(LITELLM_VENV / "bin" / "litellm"), "--config", config, "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", str(workers)],
        cwd=tmpdir, env=env, stdout=open(log + ".out", "wb"), stderr=open(log, "wb"), start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health/liveliness", 180, proc, log)
    except Exception:
        stop(proc, "litellm")
        raise
    return proc, base


def failure_reason(text: str) -> str:
    """The telling line of a failed start (Prisma's download error, say), not the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("\x1b")]
    for needle in ("ENOTFOUND", "Error:", "error", "Traceback"):
        for line in lines:
            if needle in line:
                return line[:300]
    return (lines[-1] if lines else text)[:300]


def litellm_virtual_key(base: str) -> str:
    """A virtual key with a budget (what a team would get), made through LiteLLM's own API."""
    status, body = post_json(base, "/key/generate", {"models": [MODEL], "max_budget": 1_000_000.0, "key_alias": "bench"},
                             {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"})
    if status != 200:
        raise RuntimeError(f"/key/generate answered {status}: {body[:300]}")
    return json.loads(body)["key"]


def litellm_spend_logs(base: str, key: str) -> str:
    status, body = get(base, f"/key/info?key={key}", {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"})
    if status != 200:
        return f"key/info {status}"
    info = json.loads(body).get("info") or {}
    return f"spend recorded {info.get('spend')}"


# --- HTTP client ----------------------------------------------------------------------------------


def post_json(base: str, path: str, body: dict, headers: dict[str, str]) -> tuple[int, str]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def get(base: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@dataclass
class Target:
    name: str
    base: str
    path: str
    headers: dict[str, str]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def fire(target: Target, requests: int, concurrency: int, *, stream: bool, deadline: float, pace_s: float = 0.0) -> Figures:
    """Send `requests` calls at `concurrency`; latency is the full answer, or the first body bytes for streams.

    `pace_s` > 0 (model-paced phase): client i starts i/concurrency of the way into one
    provider delay and waits a random 0-10% of it before each call, as independent
    conversations do. Without it, 32 clients against a fixed provider delay would move in
    lock-step: all 32 calls arriving in the same millisecond, every 300 ms.
    """
    body = json.dumps({"model": MODEL, "messages": PROMPT, "temperature": 0, "max_tokens": 32, "stream": stream,
                       **({"stream_options": {"include_usage": True}} if stream else {})}).encode()
    headers = {"Content-Type": "application/json", **target.headers}
    parts = urlsplit(target.base)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    turns = Turns(requests, concurrency, pace_s)

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for _ in turns.of(index):
            if time.monotonic() > deadline:
                status = "skipped (time bound)"
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                continue
            start = time.perf_counter()
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                if stream and response.status == 200:
                    first = response.read1(65536)
                    elapsed = time.perf_counter() - start
                    rest = response.read()
                    complete = b"[DONE]" in first + rest
                    status = "200" if complete else "200 (stream cut)"
                else:
                    response.read()
                    elapsed = time.perf_counter() - start
                    status = str(response.status)
            except (OSError, http.client.HTTPException) as error:
                elapsed = time.perf_counter() - start
                status = type(error).__name__
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    wall_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall_start
    figures = Figures(requests=requests, concurrency=concurrency, ok=len(latencies), statuses=statuses, wall_s=round(wall, 2))
    if latencies:
        figures.p50_ms = round(percentile(latencies, 0.50) * 1e3, 2)
        figures.p90_ms = round(percentile(latencies, 0.90) * 1e3, 2)
        figures.p99_ms = round(percentile(latencies, 0.99) * 1e3, 2)
        figures.max_ms = round(max(latencies) * 1e3, 2)
        figures.mean_ms = round(statistics.mean(latencies) * 1e3, 2)
        figures.throughput_rps = round(len(latencies) / wall, 1)
    return figures


def check_target(target: Target) -> None:
    """One plain call that must succeed before a target is measured (a clear error instead of a table of 4xx)."""
    status, body = post_json(target.base, target.path, {"model": MODEL, "messages": PROMPT, "max_tokens": 8}, target.headers)
    if status != 200:
        raise RuntimeError(f"{target.name}: {target.base}{target.path} answered {status}: {body[:500]}")


# --- Main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="per target and mode")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay-ms", type=float, default=20.0,
                        help="the fake provider's first-byte delay in the capacity passes (throughput: servers saturated)")
    parser.add_argument("--model-delay-ms", type=float, default=300.0,
                        help="the first-byte delay in the model-paced passes (added latency at a real model's pace)")
    parser.add_argument("--workers", type=int, default=1, help="server processes, ours and LiteLLM's alike")
    parser.add_argument("--time-bound", type=float, default=90.0, help="seconds per measured pass at most")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--serve-fake-upstream", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake_upstream is not None:
        serve_fake_upstream(args.serve_fake_upstream)
        return 0

    tmpdir = tempfile.mkdtemp(prefix="bench-llm-gateway-")
    procs: list[tuple[subprocess.Popen, str]] = []
    notes: list[str] = []
    try:
        upstream_proc, upstream = start_fake_upstream(args.delay_ms, tmpdir)
        procs.append((upstream_proc, "fake upstream"))
        env = our_env(upstream)
        project_id, token = seed_ours(env)
        ours_proc, ours_base = start_ours(env, args.workers, tmpdir)
        procs.append((ours_proc, "our gateway"))
        targets = [
            Target("direct", upstream, "/v1/chat/completions", {"Authorization": f"Bearer {UPSTREAM_KEY}"}),
            Target("ours", ours_base, f"/llm/{PRODUCT}/v1/chat/completions", {"Authorization": f"Bearer {token}"}),
        ]

        litellm_version = None
        litellm_mode = "not run (--no-litellm)"
        if not args.no_litellm:
            litellm_version = ensure_litellm()
            try:
                from bench.support import ensure_postgres_database

                ensure_postgres_database(LITELLM_DATABASE_URL.replace("postgresql://", "postgres://"))
                proc, base = start_litellm(upstream, args.workers, tmpdir, database=True)
                procs.append((proc, "litellm"))
                key = litellm_virtual_key(base)
                litellm_mode = ("with its PostgreSQL database: a virtual key with a budget (key lookup, budget check, spend "
                                "tracking), usage counters in Redis")
            except Exception as error:  # noqa: BLE001 - reported, then the plain mode
                notes.append("LiteLLM with its database could not run here: " + failure_reason(str(error)))
                if procs[-1][1] == "litellm":
                    stop(*procs.pop())
                proc, base = start_litellm(upstream, args.workers, tmpdir, database=False)
                procs.append((proc, "litellm"))
                key = LITELLM_MASTER_KEY
                litellm_mode = ("master key only (authenticated proxying, a proxy-wide budget in memory, usage counters in "
                                "Redis; no per-key budgets, no spend database)")
            targets.append(Target("litellm", base, "/v1/chat/completions", {"Authorization": f"Bearer {key}"}))

        for target in targets:
            check_target(target)
        time.sleep(1)  # the check's usage is recorded after its response
        events_before = count_usage_events(project_id)

        results: dict[str, dict[str, Figures]] = {}
        warm_ups: list[tuple[str, Figures]] = []
        for mode, stream in (("non_streaming", False), ("streaming_ttft", True)):
            for target in targets:
                warm = fire(target, min(200, args.requests), args.concurrency, stream=stream, deadline=time.monotonic() + 30)
                warm_ups.append((target.name, warm))
                figures = fire(target, args.requests, args.concurrency, stream=stream, deadline=time.monotonic() + args.time_bound)
                results.setdefault(target.name, {})[mode] = figures
                print(f"{target.name:8} {mode:15} p50 {figures.p50_ms:8.2f} ms  p99 {figures.p99_ms:8.2f} ms  "
                      f"{figures.throughput_rps:8.1f} req/s  {figures.statuses}", file=sys.stderr)
        # Sequential calls: the gateway's own cost per call, without queueing behind other calls.
        sequential = {t.name: fire(t, 200, 1, stream=False, deadline=time.monotonic() + 60) for t in targets}
        sequential_ttft = {t.name: fire(t, 200, 1, stream=True, deadline=time.monotonic() + 60) for t in targets}
        # Model-paced passes: the same 32 clients, but the provider answers at a real model's
        # pace (a small model's first token comes after a few hundred ms), so the offered
        # load is what 32 concurrent conversations make, not the servers' saturation point.
        set_upstream_delay(upstream_proc, args.model_delay_ms)
        paced: dict[str, dict[str, Figures]] = {}
        for mode, stream in (("non_streaming", False), ("streaming_ttft", True)):
            for target in targets:
                pace = args.model_delay_ms / 1000
                warm = fire(target, min(100, args.requests), args.concurrency, stream=stream,
                            deadline=time.monotonic() + 30, pace_s=pace)
                warm_ups.append((target.name, warm))
                figures = fire(target, args.requests, args.concurrency, stream=stream,
                               deadline=time.monotonic() + args.time_bound, pace_s=pace)
                paced.setdefault(target.name, {})[mode] = figures
                print(f"{target.name:8} paced {mode:15} p50 {figures.p50_ms:8.2f} ms  p99 {figures.p99_ms:8.2f} ms  "
                      f"{figures.throughput_rps:8.1f} req/s  {figures.statuses}", file=sys.stderr)
        time.sleep(2)  # metering is off the response path; give it a moment
        ours_passes = ([f for name, f in warm_ups if name == "ours"] + list(results["ours"].values())
                       + list(paced["ours"].values()) + [sequential["ours"], sequential_ttft["ours"]])
        through_ours = sum(f.requests for f in ours_passes)
        # A call a throttle refuses (429) never reaches the provider, so it has no usage to record.
        refused = sum(f.statuses.get("429", 0) for f in ours_passes)
        events_recorded = count_usage_events(project_id) - events_before

        report = build_report(args, results, paced, sequential, sequential_ttft, litellm_version, litellm_mode, notes, through_ours, events_recorded, refused)
        print(report["text"])
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "llm_gateway.json").write_text(json.dumps(report["json"], indent=2) + "\n")
        (RESULTS / "llm_gateway.txt").write_text(report["text"] + "\n")
        # Correctness fails the run; the speed targets are reported (met or NOT met) above.
        failed = [f"{n} {m}" for phase in (results, paced) for n, modes in phase.items() for m, f in modes.items()
                  if f.ok != f.requests]
        if failed or events_recorded < through_ours - refused:
            print(f"FAIL: non-200 answers in {failed or 'no pass'}; {events_recorded} usage events for "
                  f"{through_ours - refused} calls that reached the provider", file=sys.stderr)
            return 1
        return 0
    finally:
        for proc, name in reversed(procs):
            stop(proc, name)
        _flush_bench_redis()


def code_state() -> str:
    """The commit measured, and whether the gateway's code had uncommitted changes (others may be editing it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "products", "posthog_app"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in products/ or posthog_app/' if dirty else ''}"


def _flush_bench_redis() -> None:
    """Leave the bench's Redis database empty, as the other benchmarks do (only if this run used it)."""
    if "django" not in sys.modules:
        return
    try:
        from posthog_app.redis_client import get_client

        client = get_client()
        if client.connection_pool.connection_kwargs.get("db", 0) != 0:
            client.flushdb()
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def _phase_rows(phase: dict[str, dict[str, Figures]], title: str, figures: dict, key: str) -> list[tuple[str, ...]]:
    """Rows of one phase (capacity or model-paced): percentiles, added over direct, throughput."""
    names = list(phase)
    direct = phase["direct"]
    rows: list[tuple[str, ...]] = [(title, *("" for _ in names))]
    for mode, label in (("non_streaming", "latency"), ("streaming_ttft", "TTFT")):
        for q in ("p50", "p99"):
            rows.append((f"  {label} {q} (ms)", *(f"{phase[n][mode].__dict__[f'{q}_ms']:.2f}" for n in names)))
        for q in ("p50", "p99"):
            added = {n: round(phase[n][mode].__dict__[f"{q}_ms"] - direct[mode].__dict__[f"{q}_ms"], 2) for n in names}
            figures[f"{key}_added_{q}_ms_{mode}"] = {n: added[n] for n in names if n != "direct"}
            rows.append((f"  {label} added {q} (ms)", *(("-" if n == "direct" else f"{added[n]:.2f}") for n in names)))
        rows.append((f"  {label} throughput (req/s)", *(f"{phase[n][mode].throughput_rps:.1f}" for n in names)))
        rows.append((f"  {label} 200s / sent", *(f"{phase[n][mode].ok}/{phase[n][mode].requests}" for n in names)))
    return rows


def build_report(args, results, paced, sequential, sequential_ttft, litellm_version, litellm_mode, notes, through_ours, events_recorded,
                 refused) -> dict:
    figures: dict = {
        "requests_per_pass": args.requests,
        "concurrency": args.concurrency,
        "upstream_first_byte_delay_ms": args.delay_ms,
        "model_paced_first_byte_delay_ms": args.model_delay_ms,
        "server_workers": args.workers,
        "cpus": os.cpu_count(),
        "code": code_state(),
        "litellm_version": litellm_version,
        "litellm_mode": litellm_mode,
        "notes": notes,
        "results": {name: {mode: asdict(f) for mode, f in modes.items()} for name, modes in results.items()},
        "model_paced": {name: {mode: asdict(f) for mode, f in modes.items()} for name, modes in paced.items()},
        "sequential": {name: asdict(f) for name, f in sequential.items()},
    }
    names = list(results)
    rows = _phase_rows(results, f"capacity: provider first byte after {args.delay_ms:.0f} ms (servers saturated)",
                       figures, "capacity")
    rows += _phase_rows(paced, f"model-paced: provider first byte after {args.model_delay_ms:.0f} ms", figures, "paced")
    rows.append((f"sequential (one call at a time, provider first byte after {args.delay_ms:.0f} ms)", *("" for _ in names)))
    for label, seq in (("latency", sequential), ("TTFT", sequential_ttft)):
        rows.append((f"  {label} p50 (ms)", *(f"{seq[n].p50_ms:.2f}" for n in names)))
        rows.append((f"  {label} p99 (ms)", *(f"{seq[n].p99_ms:.2f}" for n in names)))
        for q in ("p50", "p99"):
            rows.append((f"  {label} added {q} (ms)", *("-" if n == "direct" else
                         f"{seq[n].__dict__[f'{q}_ms'] - seq['direct'].__dict__[f'{q}_ms']:.2f}" for n in names)))
    figures["sequential_ttft"] = {name: asdict(f) for name, f in sequential_ttft.items()}
    figures["ours_sequential_added_p50_ms"] = round(sequential["ours"].p50_ms - sequential["direct"].p50_ms, 2)
    figures["ours_sequential_added_p99_ms"] = round(sequential["ours"].p99_ms - sequential["direct"].p99_ms, 2)
    figures["ours_sequential_ttft_added_p99_ms"] = round(sequential_ttft["ours"].p99_ms - sequential_ttft["direct"].p99_ms, 2)
    width = max(len(r[0]) for r in rows) + 2
    lines = [
        f"LLM gateway overhead: {args.requests} OpenAI chat completions per pass, concurrency {args.concurrency}, "
        f"{args.workers} server worker(s) each, {os.cpu_count()} CPUs (client, provider and servers share them)",
        f"code: {figures['code']}",
        "",
        "".join([" " * width, *(f"{h:>14}" for h in names)]),
    ]
    lines += ["".join([r[0].ljust(width), *(f"{c:>14}" for c in r[1:])]) for r in rows]
    lines.append("")
    ours_added_p99 = figures["paced_added_p99_ms_non_streaming"]["ours"]
    ours_added_ttft_p99 = figures["paced_added_p99_ms_streaming_ttft"]["ours"]
    figures["ours_added_p99_ms"] = ours_added_p99
    figures["ours_added_ttft_p99_ms"] = ours_added_ttft_p99
    figures["ours_usage_events_recorded"] = events_recorded
    figures["ours_calls_made"] = through_ours
    figures["ours_calls_refused_429"] = refused
    lines.append(f"ours: product {PRODUCT} (billable) with a server token; {events_recorded} usage events recorded for "
                 f"{through_ours} calls through the gateway ({refused} refused with a 429: nothing to record).")
    met = ours_added_p99 < 10 and ours_added_ttft_p99 < 10
    lines.append(f"target: our added p99 < 10 ms at concurrency {args.concurrency}, model-paced (non-streaming "
                 f"{ours_added_p99:.2f} ms, TTFT {ours_added_ttft_p99:.2f} ms): {'met' if met else 'NOT met'}")
    cap = figures["capacity_added_p99_ms_non_streaming"]["ours"]
    cap_ttft = figures["capacity_added_p99_ms_streaming_ttft"]["ours"]
    lines.append(f"       at the saturation point (capacity passes) the added p99 is {cap:.2f} ms / TTFT {cap_ttft:.2f} ms: "
                 f"queueing, since latency >= {args.concurrency} / throughput once a server is saturated")
    if "litellm" in results:
        for mode in ("non_streaming", "streaming_ttft"):
            theirs = results["litellm"][mode].throughput_rps
            ratio = round(results["ours"][mode].throughput_rps / theirs, 2) if theirs else None
            figures[f"throughput_ratio_ours_to_litellm_{mode}"] = ratio
        ratio = figures["throughput_ratio_ours_to_litellm_non_streaming"]
        ratio_s = figures["throughput_ratio_ours_to_litellm_streaming_ttft"]
        lines.append(f"litellm {litellm_version}: {litellm_mode}.")
        lines.append(f"target: throughput >= 2x LiteLLM's (capacity passes; non-streaming {ratio}x, streaming {ratio_s}x): "
                     f"{'met' if ratio and ratio_s and ratio >= 2 and ratio_s >= 2 else 'NOT met'}")
    lines += [f"note: {n}" for n in notes]
    lines.append("added = the target's percentile minus direct's, same pass, same client.")
    return {"json": figures, "text": "\n".join(lines)}


if __name__ == "__main__":
    sys.exit(main())
