"""``segstyle serve``: the pipeline on a schedule, through a real Prefect server on loopback.

Schedules need a long-lived Prefect API (the ephemeral one ``segstyle run`` starts dies with the
process), so this command connects to ``PREFECT_API_URL`` / ``--api-url`` when one answers, else
starts ``prefect server start --host 127.0.0.1`` as a child process (log in
``.dvc/tmp/prefect-server.log``; stopped on exit), then serves the deployment
``segstyle-pipeline/<name>`` with a cron schedule from this process (``Flow.serve``). Scheduled and
UI-triggered runs execute here, one at a time (``limit=1``: DVC runs one reproduction per
repository). Users with work pools deploy ``prefect.yaml`` instead (``prefect deploy``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from segstyle.pipelines.config import load_params
from segstyle.core.errors import SegstyleError, UsageError, user_errors

SERVER_LOG = Path(".dvc") / "tmp" / "prefect-server.log"


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when ``GET <api_url>/health`` answers 200 (Prefect's liveness endpoint)."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(host: str, port: int, log: Path, timeout: float = 180.0) -> subprocess.Popen:
    """Start ``prefect server start`` and wait until its API is healthy (bounded by ``timeout``)."""
    exe = Path(sys.executable).parent / "prefect"
    cmd = [str(exe) if exe.is_file() else "prefect", "server", "start", "--host", host, "--port", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api = f"http://{host}:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SegstyleError(f"`prefect server start` exited with code {proc.returncode} (log: {log})")
        if api_healthy(api):
            return proc
        time.sleep(0.5)
    stop_server(proc)
    raise SegstyleError(f"Prefect server on {api} not healthy after {timeout:.0f} s (log: {log})")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def validate_cron(cron: str) -> str:
    """One clear line for a bad cron expression (before any server starts)."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise UsageError(f"invalid cron expression '{cron}' (5 fields: minute hour day month weekday)") from None
    return cron


def serve(root: Path, *, cron: str, name: str, profile: str | None, targets: list[str], api_url: str | None,
          host: str, port: int, limit: int = 1) -> None:
    root = root.resolve()
    if not (root / "dvc.yaml").is_file():
        raise UsageError(f"{root}: no dvc.yaml here (run segstyle from the repository root)")
    load_params(root / "params.yaml", profile)
    validate_cron(cron)
    from segstyle.pipelines.stages import load_plan

    load_plan(root, targets or None)

    server = None
    url = api_url or f"http://{host}:{port}/api"
    if not api_healthy(url):
        if api_url:
            raise SegstyleError(f"no Prefect API answers at {api_url}")
        click.echo(f"starting a Prefect server on {url} (log: {root / SERVER_LOG})")
        server = start_server(host, port, root / SERVER_LOG)
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        from prefect.deployments.runner import EntrypointType
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from segstyle.pipelines.flow import FLOW_NAME, segstyle_pipeline

        click.echo(f"serving deployment {FLOW_NAME}/{name} (cron '{cron}') against {url}; UI: {url[:-4]}")
        with temporary_settings(updates={PREFECT_API_URL: url}):
            segstyle_pipeline.serve(
                name=name,
                cron=cron,
                parameters={"root": str(root), "profile": profile, "targets": list(targets)},
                description="segstyle: every dvc.yaml stage through Prefect (DVC skips what is up to date)",
                tags=["segstyle"],
                limit=limit,
                print_starting_message=False,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
    finally:
        if server is not None:
            stop_server(server)


@click.command("serve")
@click.option("--cron", default="0 3 * * *", show_default=True, help="Schedule (cron, server time zone UTC).")
@click.option("--name", default="scheduled", show_default=True, help="Deployment name (segstyle-pipeline/NAME).")
@click.option("--profile", default=None, help="demo|full for the scheduled runs (default: params.yaml's).")
@click.option("--targets", "-t", multiple=True, help="Stage(s) to bring up to date (default: all).")
@click.option("--api-url", default=None, envvar="PREFECT_API_URL",
              help="Existing Prefect API (default: http://HOST:PORT/api, started if nothing answers).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where to start the Prefect server.")
@click.option("--port", default=4200, show_default=True, type=int)
@click.option("--root", type=click.Path(file_okay=False, exists=True), default=".", show_default=True)
def cli(cron, name, profile, targets, api_url, host, port, root):
    """Serve the pipeline as a Prefect deployment with a cron schedule (Ctrl-C to stop)."""
    with user_errors():  # DVC / Prefect: one line, never a traceback
        serve(Path(root), cron=cron, name=name, profile=profile, targets=list(targets), api_url=api_url, host=host,
              port=port)
