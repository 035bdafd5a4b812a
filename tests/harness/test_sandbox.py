"""The agent's sandbox, attacked with real bubblewrap and real processes.

An agent command runs under `agent_spec` (its scratch checkout and a seeded private HOME
writable, everything else read-only, `.autoresearch/` and the evaluation data hidden) and tries
every way out the "Sealed" issue lists: writing to the user's HOME, to /tmp, to the installed
package, a `.pth` into site-packages, to the task folder; reading the journal and the
evaluation data; leaving a process behind. Each must fail (judged on the host, after the fact)
while the scratch folder and the seeded HOME stay writable and the network stays reachable.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import processes_with

import autoresearch
from autoresearch.harness import sandbox as sandbox_module
from autoresearch.harness.process import run_command
from autoresearch.harness.sandbox import (
    SandboxSpec,
    agent_hidden,
    agent_home_env,
    agent_spec,
    bwrap_works,
    seed_agent_home,
    wrap_command,
)

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here (apt-get install bubblewrap)")

EVAL_TEXT = "EVAL-ROWS-7f3a"
JOURNAL_TEXT = "JOURNAL-ROW-91c2"

ATTACK = r'''
import json, os, sys, sysconfig
from pathlib import Path
probe, targets = sys.argv[1], json.loads(sys.argv[2])
result = {}
for name, path in targets["write"].items():
    try:
        Path(path).write_text("pwned " + probe)
        result[name] = "written"
    except OSError as exc:
        result[name] = type(exc).__name__
for name, path in targets["read"].items():
    try:
        result[name] = Path(path).read_text()
    except OSError as exc:
        result[name] = type(exc).__name__
Path("attack.json").write_text(json.dumps(result))
'''


def _world(base: Path) -> dict[str, Path]:
    """A task folder with a real journal and evaluation data, a scratch checkout of it, a user
    home with agent config, and the agent's (still empty) private HOME."""
    task = base / "task"
    (task / ".autoresearch").mkdir(parents=True)
    (task / "train.py").write_text("print('val_loss: 1.0')\n")
    (task / "data").mkdir()
    (task / "data" / "eval.csv").write_text(EVAL_TEXT + "\n")
    with sqlite3.connect(task / ".autoresearch" / "journal.db") as db:
        db.execute("create table t (x text)")
        db.execute("insert into t values (?)", (JOURNAL_TEXT,))
    scratch = base / "scratch"
    scratch.mkdir()
    shutil.copy(task / "train.py", scratch / "train.py")
    (scratch / "attack.py").write_text(ATTACK)
    user = base / "user"
    (user / ".claude").mkdir(parents=True)
    (user / ".claude" / "settings.json").write_text('{"model": "x"}')
    return {"task": task, "scratch": scratch, "home": base / "agent-home", "user": user,
            "journal": task / ".autoresearch" / "journal.db", "eval": task / "data" / "eval.csv"}


def _run(spec: SandboxSpec, command: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(wrap_command(command, cwd=cwd, spec=spec), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(params=["under-tmp", "under-home"])
def world(request, tmp_path: Path):
    """Task folders live under /tmp in CI and under the user's home in real use; the private
    /tmp hides the first kind and the read-only root protects the second, so both are attacked."""
    if request.param == "under-tmp":
        yield _world(tmp_path)
        return
    base = Path.home() / ".cache" / f"autoresearch-test-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    try:
        yield _world(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _spec(world: dict[str, Path]) -> SandboxSpec:
    seed_agent_home(world["home"], world["user"], environ={})
    return agent_spec(world["scratch"], world["home"], [world["task"] / ".autoresearch", world["eval"]])


def test_an_agent_cannot_write_or_read_outside_its_scratch_and_home(world) -> None:
    probe = uuid.uuid4().hex
    site = Path(sysconfig.get_paths()["purelib"])
    writes = {
        "user_home": Path.home() / f".autoresearch-probe-{probe}",
        "tmp": Path("/tmp") / f"autoresearch-probe-{probe}",
        "package": Path(autoresearch.__file__).parent / f"probe_{probe}.py",
        "site_pth": site / f"autoresearch-probe-{probe}.pth",
        "task_file": world["task"] / "train.py",
        "task_new": world["task"] / f"new-{probe}.py",
        "user_config": world["user"] / ".claude" / "settings.json",
        "scratch": world["scratch"] / "train.py",
        "seeded_home": world["home"] / ".claude" / "settings.json",
    }
    reads = {"journal": world["journal"], "eval": world["eval"]}
    targets = {"write": {k: str(v) for k, v in writes.items()}, "read": {k: str(v) for k, v in reads.items()}}
    task_before = (world["task"] / "train.py").read_text()
    try:
        proc = _run(_spec(world), f"{sys.executable} attack.py {probe} '{json.dumps(targets)}'", world["scratch"])
        assert proc.returncode == 0, proc.stderr
        result = json.loads((world["scratch"] / "attack.json").read_text())
        # Inside, the private /tmp takes the write; outside nothing may have changed.
        for name in ("user_home", "tmp", "package", "site_pth", "task_new"):
            assert not writes[name].exists(), f"{name}: {writes[name]} was written from the sandbox ({result[name]})"
        assert (world["task"] / "train.py").read_text() == task_before
        assert (world["user"] / ".claude" / "settings.json").read_text() == '{"model": "x"}'
        # Outside /tmp the write itself fails (read-only); under /tmp it lands in the private
        # tmpfs, which vanishes with the step (checked above: the host copy is unchanged).
        for name in ("user_home", "package", "site_pth", "task_file", "task_new", "user_config"):
            if not writes[name].is_relative_to("/tmp"):
                assert result[name] == "OSError", (name, result[name])
        assert result["scratch"] == "written" and (world["scratch"] / "train.py").read_text() == f"pwned {probe}"
        assert result["seeded_home"] == "written"
        assert (world["home"] / ".claude" / "settings.json").read_text() == f"pwned {probe}"
        assert JOURNAL_TEXT not in result["journal"] and result["journal"] in ("FileNotFoundError", "")
        assert EVAL_TEXT not in result["eval"]
    finally:
        for path in writes.values():
            if probe in path.name and path.exists():
                path.unlink()


@pytest.mark.parametrize("phase", ["agent", "run"])
def test_no_process_outlives_its_step(world, phase: str) -> None:
    """setsid, a cleared environment (no run marker to sweep by) and a double fork: the
    process is still gone once the step returns, because its PID namespace died with it.
    The same for the agent step and for a run (its output folder as the only writable place)."""
    token = f"escapee-{uuid.uuid4().hex}"
    where = world["scratch"] if phase == "agent" else world["scratch"].parent / "out"
    spec = _spec(world) if phase == "agent" else SandboxSpec(writable=[where])
    daemon = f"echo $$ > {where}/escapee.pid; touch {where}/started; sleep 300; : {token}"
    command = f"env -i setsid sh -c '( {daemon} ) &' < /dev/null > /dev/null 2>&1; sleep 0.5; exit 0"
    leftovers: list[int] = []
    try:
        proc = _run(spec, command, world["scratch"])
        assert proc.returncode == 0, proc.stderr
        assert (where / "started").exists(), "the escapee never ran"
        assert (where / "escapee.pid").read_text().strip().isdigit()
        deadline = time.monotonic() + 10  # SIGKILL is immediate; reaping by the kernel may lag a moment
        while (leftovers := processes_with(token)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers == [], f"processes of the agent step survived it: {leftovers}"
    finally:
        for pid in leftovers:
            os.kill(pid, 9)


def test_without_the_sandbox_the_same_escapee_survives(tmp_path: Path) -> None:
    """Control for the test above: the escape is real, so its absence under bwrap means something."""
    token = f"escapee-{uuid.uuid4().hex}"
    command = f"env -i setsid sh -c '( sleep 300; : {token} ) &' < /dev/null > /dev/null 2>&1; exit 0"
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, timeout=30, check=True)
    survivors = []
    try:
        deadline = time.monotonic() + 10
        while not (survivors := processes_with(token)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert survivors, "the unsandboxed escapee did not start"
    finally:
        for pid in survivors:
            os.kill(pid, 9)


def test_the_agent_sees_no_process_but_its_own(world) -> None:
    """A fresh /proc for its PID namespace: the orchestrator's environment (API keys) and
    every other process of the user are out of sight."""
    token = f"neighbour-{uuid.uuid4().hex}"
    neighbour = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token])
    try:
        proc = _run(_spec(world), "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done", world["scratch"])
    finally:
        neighbour.kill()
        neighbour.wait()
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout and len(proc.stdout.splitlines()) <= 4, proc.stdout


def test_a_run_cannot_change_the_export_it_runs_in(world, tmp_path: Path) -> None:
    """The run folder (an export with the locked harness) is read-only to the run; only its
    output folder takes writes. A swap of a harness file from inside the run is impossible."""
    export, out = world["scratch"], world["scratch"].parent / "out"
    (export / "evaluate.py").write_text("print('val_loss: 1.0')\n")
    proc = _run(SandboxSpec(writable=[out]), "echo 'print(\"val_loss: 0.0\")' > evaluate.py; echo x > new.py; "
                "echo kept > $0; echo ok > " + str(out / "model.json"), export)
    assert (export / "evaluate.py").read_text() == "print('val_loss: 1.0')\n"
    assert not (export / "new.py").exists()
    assert (out / "model.json").read_text() == "ok\n"
    assert "Read-only file system" in proc.stderr or "No such file" in proc.stderr


def test_the_agent_step_is_a_new_session(world) -> None:
    """--new-session: the agent is not in the caller's session, so it cannot push keystrokes
    into the user's terminal (TIOCSTI). getsid() reads 0 for a process whose session leader
    lives outside its PID namespace (the caller's session), and non-zero for a session of its own."""
    code = "import os; print(os.getsid(0))"
    proc = _run(_spec(world), f"{sys.executable} -c '{code}'", world["scratch"])
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) != 0
    plain = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                            sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0 and int(plain.stdout.strip()) == 0, "control: without --new-session the sid is outside"


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"model says hi"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_agent_reaches_the_network_and_a_run_does_not(world) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fetch = (f"{sys.executable} -c 'import urllib.request as u; "
             f"print(u.urlopen(\"http://127.0.0.1:{server.server_port}/\", timeout=5).read().decode())'")
    try:
        agent = _run(_spec(world), fetch, world["scratch"])
        assert agent.returncode == 0 and "model says hi" in agent.stdout, agent.stderr
        run = _run(SandboxSpec(writable=[world["scratch"]]), fetch, world["scratch"])
        assert run.returncode != 0 and "model says hi" not in run.stdout
    finally:
        server.shutdown()


def test_the_seeded_home_is_a_copy_of_the_agent_config(tmp_path: Path) -> None:
    user = tmp_path / "user"
    files = {
        ".claude/settings.json": "{}", ".claude/.credentials.json": "cred", ".claude.json": "{}",
        ".claude/projects/old-session.jsonl": "transcript", ".codex/auth.json": "auth", ".codex/config.toml": "",
        ".codex/sessions/2026/rollout.jsonl": "transcript", ".gemini/oauth_creds.json": "g",
        ".config/opencode/opencode.json": "{}", ".local/share/opencode/auth.json": "o",
        ".local/share/opencode/storage/s.json": "transcript", ".aider.conf.yml": "model: x",
        ".aider.model.settings.yml": "", ".gitconfig": "[user]\nname = u\n", ".ssh/id_ed25519": "private key",
        ".bash_history": "history",
    }
    for rel, text in files.items():
        (user / rel).parent.mkdir(parents=True, exist_ok=True)
        (user / rel).write_text(text)
    real_claude = tmp_path / "dotfiles" / "claude.json"
    real_claude.parent.mkdir()
    real_claude.write_text('{"dotfiles": true}')
    (user / ".claude.json").unlink()
    (user / ".claude.json").symlink_to(real_claude)
    lock = socket.socket(socket.AF_UNIX)  # an IDE's lock socket: special files are not copied
    lock.bind(str(user / ".claude" / "ide.sock"))
    home = tmp_path / "agent-home"
    copied = seed_agent_home(home, user, environ={})
    lock.close()
    assert set(copied) == {".claude", ".claude.json", ".codex", ".gemini", ".config/opencode", ".local/share/opencode",
                           ".aider.conf.yml", ".aider.model.settings.yml", ".gitconfig"}
    assert (home / ".claude" / ".credentials.json").read_text() == "cred"
    assert (home / ".codex" / "auth.json").read_text() == "auth"
    assert (home / ".local/share/opencode/auth.json").read_text() == "o"
    # A symlinked config becomes a writable copy; session history and unrelated secrets stay out.
    assert not (home / ".claude.json").is_symlink() and (home / ".claude.json").read_text() == '{"dotfiles": true}'
    for absent in (".claude/ide.sock", ".claude/projects", ".codex/sessions", ".local/share/opencode/storage", ".ssh", ".bash_history"):
        assert not (home / absent).exists(), absent
    (home / ".codex" / "auth.json").write_text("changed")
    assert (user / ".codex" / "auth.json").read_text() == "auth"


def test_moved_config_folders_are_seeded_from_where_they_live(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "codex").mkdir(parents=True)
    (elsewhere / "codex" / "auth.json").write_text("moved codex")
    (elsewhere / "xdg" / "opencode").mkdir(parents=True)
    (elsewhere / "xdg" / "opencode" / "opencode.json").write_text("moved opencode")
    environ = {"CODEX_HOME": str(elsewhere / "codex"), "XDG_CONFIG_HOME": str(elsewhere / "xdg")}
    home = tmp_path / "agent-home"
    seed_agent_home(home, tmp_path / "user", environ=environ)
    assert (home / ".codex" / "auth.json").read_text() == "moved codex"
    assert (home / ".config" / "opencode" / "opencode.json").read_text() == "moved opencode"
    env = agent_home_env(home, environ)
    assert env["CODEX_HOME"] == str(home / ".codex") and env["XDG_CONFIG_HOME"] == str(home / ".config")
    assert "CLAUDE_CONFIG_DIR" not in env


def test_inside_the_agent_sees_its_private_home(world) -> None:
    """HOME and the XDG folders point at the seeded copy whatever the caller's env says."""
    env = {**os.environ, "HOME": str(world["user"]), "XDG_CONFIG_HOME": str(world["user"] / ".config")}
    proc = _run(_spec(world), "echo $HOME; echo $XDG_CONFIG_HOME; cat $HOME/.claude/settings.json", world["scratch"], env=env)
    assert proc.returncode == 0, proc.stderr
    home = world["home"].resolve()
    assert proc.stdout.splitlines() == [str(home), str(home / ".config"), '{"model": "x"}']


def test_hidden_paths_stay_hidden_when_the_scratch_lives_inside_them(tmp_path: Path) -> None:
    """The lead may keep scratch checkouts and agent homes under `.autoresearch/`: they are
    bound back on top of the hidden folder, and the rest of it stays invisible."""
    state = tmp_path / "task" / ".autoresearch"
    scratch, home = state / "scratch" / "7", state / "agent-home"
    scratch.mkdir(parents=True)
    (state / "journal.db").write_text(JOURNAL_TEXT)
    spec = agent_spec(scratch, home, [state])
    proc = _run(spec, f"ls -a {state}; cat {state}/journal.db; echo ok > mine; echo ok > $HOME/h", scratch)
    assert JOURNAL_TEXT not in proc.stdout
    assert (scratch / "mine").read_text() == "ok\n" and (home / "h").read_text() == "ok\n"
    assert (state / "journal.db").read_text() == JOURNAL_TEXT


def test_agent_hidden_covers_the_state_and_the_configured_eval_data(world, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "val").mkdir(parents=True)
    (cache / "val" / "rows.txt").write_text(EVAL_TEXT)
    hidden = agent_hidden(world["task"], ["$AUTORESEARCH_CACHE/val", str(world["eval"])], {"AUTORESEARCH_CACHE": str(cache)})
    assert hidden == [world["task"].resolve() / ".autoresearch", (cache / "val").resolve(), world["eval"].resolve()]
    seed_agent_home(world["home"], world["user"], environ={})
    proc = _run(agent_spec(world["scratch"], world["home"], hidden),
                f"cat {cache}/val/rows.txt {world['eval']} {world['journal']}", world["scratch"])
    assert EVAL_TEXT not in proc.stdout and JOURNAL_TEXT not in proc.stdout and proc.returncode != 0


def test_run_command_with_the_agent_spec_leaves_nothing_behind(world) -> None:
    """The same spec through the harness's run_command, as the proposer will use it."""
    log = world["scratch"].parent / "agent.log"
    result = run_command(f"echo edited > train.py; cat {world['journal']}", cwd=world["scratch"],
                         env=dict(os.environ), timeout=60, log_path=log, sandbox=_spec(world))
    assert result.exit_code != 0  # the journal is not there to read
    assert (world["scratch"] / "train.py").read_text() == "edited\n"
    assert JOURNAL_TEXT not in log.read_text()


def test_a_run_that_ended_itself_left_no_process_the_moment_it_returns(tmp_path: Path) -> None:
    """After a sandboxed run that exits by itself the harness skips its /proc sweep: the kernel
    empties the run's PID namespace before its init is reaped, so nothing can be left. The attack:
    a double-forked, setsid, marker-free escapee, checked at once (no grace period to lag into)."""
    token = f"escapee-{uuid.uuid4().hex}"
    out = tmp_path / "out"
    command = (f"env -i setsid sh -c '( touch {out}/started; sleep 300; : {token} ) &' < /dev/null > /dev/null 2>&1; "
               f"while [ ! -f {out}/started ]; do sleep 0.01; done; echo 'val: 1'")
    leftovers: list[int] = []
    try:
        result = run_command(command, cwd=tmp_path, env=dict(os.environ), timeout=60, log_path=tmp_path / "run.log",
                             sandbox=SandboxSpec(writable=[out]))
        leftovers = processes_with(token)
        assert result.ok and result.metrics == {"val": 1.0}
        assert (out / "started").exists(), "the escapee never ran"
        assert leftovers == [], f"a process outlived its run: {leftovers}"
    finally:
        for pid in leftovers:
            os.kill(pid, 9)


def test_the_bwrap_probe_is_remembered_per_boot_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe (a bwrap start) is cached under a key of bwrap's file and the kernel's
    user-namespace settings: a stale or foreign entry is probed again, a matching one is used."""
    from autoresearch.harness import sandbox

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "autoresearch" / "bwrap-probe"
    sandbox.bwrap_works.cache_clear()
    try:
        assert sandbox.bwrap_works() is True  # probed: nothing cached yet
        key = cache.read_text().split("\n")[0]
        assert key == sandbox._probe_key(shutil.which("bwrap") or "") and "|" in key
        cache.write_text(f"{key}\nfails\n")  # a matching entry is believed (no probe)
        sandbox.bwrap_works.cache_clear()
        assert sandbox.bwrap_works() is False
        cache.write_text("another boot|or another bwrap\nfails\n")  # a stale entry is probed again
        sandbox.bwrap_works.cache_clear()
        assert sandbox.bwrap_works() is True
        assert cache.read_text() == f"{key}\nworks\n"
    finally:
        sandbox.bwrap_works.cache_clear()


def test_a_config_fixed_between_proposals_reaches_the_agent(tmp_path: Path) -> None:
    """The copy follows the user's config: re-made when it changed, removed when it is gone,
    left alone (with what the agent wrote into it) while it is the same."""
    user, home = tmp_path / "user", tmp_path / "agent-home"
    (user / ".codex").mkdir(parents=True)
    (user / ".codex" / "config.toml").write_text('base_url = "http://127.0.0.1:1/v1"\n')  # the wrong port
    (user / ".aider.conf.yml").write_text("openai-api-key: sk-wrong\n")
    assert set(seed_agent_home(home, user, environ={})) == {".codex", ".aider.conf.yml"}
    (home / ".codex" / "history.jsonl").write_text("the agent's own session")
    assert seed_agent_home(home, user, environ={}) == []  # nothing changed: nothing copied
    assert (home / ".codex" / "history.jsonl").exists()
    (user / ".codex" / "config.toml").write_text('base_url = "http://127.0.0.1:8080/v1"\n')  # fixed
    (user / ".aider.conf.yml").unlink()
    (user / ".gemini").mkdir()
    (user / ".gemini" / "settings.json").write_text('{"security": {"auth": {"selectedType": "gemini-api-key"}}}')
    assert set(seed_agent_home(home, user, environ={})) == {".codex", ".gemini"}
    assert "8080" in (home / ".codex" / "config.toml").read_text()
    assert not (home / ".aider.conf.yml").exists()
    assert (home / ".gemini" / "settings.json").exists()


def test_a_home_seeded_before_the_manifest_is_seeded_again(tmp_path: Path) -> None:
    user, home = tmp_path / "user", tmp_path / "agent-home"
    (user / ".gemini").mkdir(parents=True)
    (user / ".gemini" / "settings.json").write_text("fixed")
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text("stale copy from an older autoresearch")
    assert seed_agent_home(home, user, environ={}) == [".gemini"]
    assert (home / ".gemini" / "settings.json").read_text() == "fixed"


def test_the_gpu_device_nodes_are_bound_into_the_fresh_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    """bwrap's fresh /dev has no GPU nodes; whatever this machine has (here: stand-ins) is bound in."""
    monkeypatch.setattr(sandbox_module, "GPU_DEVICE_GLOBS", ("/dev/nul*", "/dev/no-such-gpu"))
    argv = wrap_command("true", cwd=Path("/"), spec=SandboxSpec())
    assert argv[argv.index("--dev-bind") : argv.index("--dev-bind") + 3] == ["--dev-bind", "/dev/null", "/dev/null"]
    assert "/dev/no-such-gpu" not in argv
