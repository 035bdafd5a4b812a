"""The sandbox: bubblewrap (`bwrap`) around each phase of an experiment and around the agent.

Run phase: the whole filesystem read-only, the task's `.autoresearch/` hidden except the run's
own fresh output dir (writable), a private /tmp and HOME that vanish after the run, the
validation and holdout data hidden, no network unless asked. Evaluate phase: the same, with
the evaluation data visible and the run's outputs read-only.

Agent phase (the proposer): the same read-only world, with the network on (the agent must
reach its model), its scratch checkout writable, and a private writable HOME seeded with a
*copy* of the user's coding-agent config and auth, so a CLI can write its session files without
being able to touch the real ones. Every phase gets its own PID namespace and dies with its
parent, so no process it starts (setsid or not) outlives it: when the namespace's first process
exits the kernel kills the rest. `--new-session` detaches it from any terminal (no TIOCSTI
keystroke injection into the user's shell).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import StateError


class SandboxUnavailable(StateError):
    """`[sandbox] kind = "bwrap"` where bubblewrap cannot run."""


@dataclass(frozen=True)
class SandboxSpec:
    """Mounts, applied in this order over a read-only root and an empty private /tmp:
    `visible` re-exposes what the run needs that lives under /tmp (the task, the interpreter,
    the data), `hidden` masks folders with an empty one, `readonly` re-exposes paths inside a
    masked folder, `writable` binds the output dir read-write."""

    writable: list[Path] = field(default_factory=list)
    readonly: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    visible: list[Path] = field(default_factory=list)
    network: bool = False
    home: str = "/tmp/home"  # private HOME inside the private /tmp
    home_dir: Path | None = None  # a host folder bound writable and used as HOME (the agent's seeded home)
    env: dict[str, str] = field(default_factory=dict)  # set inside the sandbox, over the caller's env


# What decides whether bubblewrap can make its namespaces: read into the probe cache's key, so a
# changed kernel setting, a new bwrap or a reboot probes again.
USERNS_SETTINGS = ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces",
                   "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                   "/proc/sys/kernel/random/boot_id")


@functools.lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bwrap is installed and can create its namespaces here (it can't everywhere).

    The probe (a bwrap that runs /bin/true, 4-11 ms) is remembered in the user's cache folder
    under a key made of bwrap's file and the kernel's user-namespace settings, so the native
    `experiment` an agent calls hundreds of times a night pays for it once per boot."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    key, cache = _probe_key(exe), _probe_cache()
    try:
        cached = cache.read_text().split("\n")
        if len(cached) >= 2 and cached[0] == key:
            return cached[1] == "works"
    except OSError:
        pass
    probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--unshare-pid", "--unshare-net", "--die-with-parent", "/bin/true"]
    try:
        works = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}")
        tmp.write_text(f"{key}\n{'works' if works else 'fails'}\n")
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home: probe every time
    return works


def _probe_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autoresearch" / "bwrap-probe"


def _probe_key(exe: str) -> str:
    st = os.stat(exe)
    parts = [exe, str(st.st_ino), str(st.st_mtime_ns), str(os.getuid())]
    for name in USERNS_SETTINGS:
        try:
            parts.append(Path(name).read_text().strip())
        except OSError:
            parts.append("-")
    return "|".join(parts)


def resolve_kind(kind: str) -> tuple[str, str]:
    """The sandbox that will actually be used, and a message for the user when it differs."""
    if kind == "none":
        return "none", ""
    if bwrap_works():
        return "bwrap", ""
    hint = ("bubblewrap is not usable here, so runs are NOT sandboxed (install it: "
            "`apt-get install bubblewrap`, or `[sandbox] kind = \"none\"` to silence this)")
    if kind == "bwrap":
        raise SandboxUnavailable(f"[sandbox] kind = \"bwrap\" but {hint.split(', so')[0]}")
    return "none", hint


def expand_path(text: str, env: dict[str, str]) -> Path:
    """`$AUTORESEARCH_CACHE/x` and `~/x` in config paths, expanded against the run's env."""
    expanded = text
    for key, value in env.items():
        if key.startswith("AUTORESEARCH_"):
            expanded = expanded.replace(f"${{{key}}}", value).replace(f"${key}", value)
    return Path(os.path.expanduser(os.path.expandvars(expanded))).resolve()


# Where each coding-agent CLI keeps its config and auth, relative to HOME. Session history,
# logs and caches inside them are left out (SKIPPED): large, private to earlier work, and
# nothing a new session needs. `.aider*` is a glob: ~/.aider.conf.yml, ~/.aider.model.*.
AGENT_CONFIG = (
    ".claude", ".claude.json",                  # Claude Code (settings, .credentials.json; main config)
    ".codex",                                   # Codex (config.toml, auth.json)
    ".gemini",                                  # Gemini CLI (settings.json, oauth_creds.json, .env)
    ".config/opencode", ".local/share/opencode",  # opencode (opencode.json; auth.json)
    ".aider*", ".env",                          # aider (.aider.conf.yml, ~/.aider/oauth-keys.env; ~/.env keys)
    ".gitconfig", ".config/git",                # git identity, for agents that commit in their checkout
)
SKIPPED = {
    ".claude": {"projects", "todos", "shell-snapshots", "statsig", "logs", "debug", "file-history", "ide",
                "local"},  # local: an old per-user install of the CLI itself, run from where it is
    ".codex": {"sessions", "archived_sessions", "log", "packages"},  # packages: the standalone install
    ".gemini": {"tmp", "history"},
    ".local/share/opencode": {"storage", "log", "snapshot", "project"},
    # .aider/caches is kept: its model price table lets aider price its usage offline
}
SEED_MANIFEST = ".autoresearch-seed.json"  # in the agent's HOME: the hash of each user config it copied
# Env variables that move a CLI's config folder: seeded from there, pointed at the copy.
RELOCATING = {"CLAUDE_CONFIG_DIR": ".claude", "CODEX_HOME": ".codex"}


def seed_agent_home(dest: Path, user_home: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Copy the user's coding-agent config and auth (AGENT_CONFIG) into DEST, the agent's
    private HOME. Copies, never binds: what the agent writes there (refreshed tokens, session
    files, a poisoned settings file) never reaches the user's own. Returns the paths copied this
    time, relative to DEST. A CLI whose folder was moved by CLAUDE_CONFIG_DIR / CODEX_HOME, or by
    XDG_CONFIG_HOME / XDG_DATA_HOME, is copied from there (agent_home_env points at the copy).

    Called before every proposal. Each copy is re-made when the user's own changed since it was
    made (a content hash of the source, kept in DEST/SEED_MANIFEST) and removed when the user's
    is gone, so a config fixed between two experiments reaches the second; while the user's is
    unchanged, what the agent wrote into its copy stays."""
    with _SEEDING:  # the slots of one loop share the home: one seeds at a time
        return _seed(Path(dest), Path(user_home), dict(os.environ if environ is None else environ))


_SEEDING = threading.Lock()


def _seed(dest: Path, user_home: Path, environ: dict[str, str]) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest = dest / SEED_MANIFEST
    seeded = _read_manifest(manifest)
    sources = [(rel, source) for rel, source in _config_sources(user_home, environ) if source.exists()]
    for rel in [r for r in seeded if r not in {rel for rel, _ in sources}]:  # the user removed it
        _remove(dest / rel)
        del seeded[rel]
    copied: list[str] = []
    for rel, source in sources:
        target = dest / rel
        digest = _digest(source, SKIPPED.get(rel, set()))
        if (target.exists() or target.is_symlink()) and seeded.get(rel) == digest:
            continue  # the user's is unchanged: the agent's copy (and what it wrote there) stays
        _remove(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir():
                # Top level followed (a dotfiles symlink must become a writable copy), links inside kept.
                shutil.copytree(source, target, symlinks=True, ignore=_skipper(source, SKIPPED.get(rel, set())))
            elif source.is_file():
                shutil.copy2(source, target)
            else:
                continue
        except shutil.Error:
            pass  # some entries were unreadable; the rest is copied
        except OSError:
            continue  # unreadable: the CLI starts as it would without this config
        seeded[rel] = digest
        copied.append(rel)
    manifest.write_text(json.dumps(seeded, indent=1, sort_keys=True))
    return copied


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _digest(source: Path, skip: set[str]) -> str:
    """A hash of what seeding SOURCE would copy: each regular file's path and bytes, each
    link's target; SKIP folders at the top and special files left out, as the copy does."""
    h = hashlib.sha256()
    if not source.is_dir():
        h.update(_read_bytes(source))
        return h.hexdigest()
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not (here == source and d in skip))
        for name in sorted(files + [d for d in dirs if (here / d).is_symlink()]):
            path = here / name
            h.update(str(path.relative_to(source)).encode() + b"\0")
            h.update(os.readlink(path).encode() if path.is_symlink() else _read_bytes(path))
    return h.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes() if stat.S_ISREG(os.stat(path).st_mode) else b""
    except OSError:
        return b"unreadable"


def _skipper(top: Path, skip: set[str]):
    """copytree's ignore: the SKIP folders at TOP, and sockets, fifos and devices anywhere
    (an IDE's lock socket in ~/.claude would fail the copy)."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        dropped = [n for n in names if Path(folder) == top and n in skip]
        for name in names:
            try:
                mode = os.lstat(os.path.join(folder, name)).st_mode
            except OSError:
                dropped.append(name)
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                dropped.append(name)
        return dropped
    return ignore


def _config_sources(user_home: Path, environ: dict[str, str]) -> list[tuple[str, Path]]:
    """(path under the new HOME, where it comes from) for every known config location."""
    xdg = {".config/": environ.get("XDG_CONFIG_HOME"), ".local/share/": environ.get("XDG_DATA_HOME")}
    moved = {rel: Path(environ[name]) for name, rel in RELOCATING.items() if environ.get(name)}
    pairs: list[tuple[str, Path]] = []
    for pattern in AGENT_CONFIG:
        if "*" in pattern:
            pairs += [(p.name, p) for p in sorted(user_home.glob(pattern))]
            continue
        source = moved.get(pattern, user_home / pattern)
        for prefix, base in xdg.items():
            if pattern.startswith(prefix) and base:
                source = Path(base) / pattern[len(prefix):]
        pairs.append((pattern, source))
    return pairs


def agent_home_env(home: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables that make every agent CLI use HOME's copies: HOME, the XDG folders, and
    CLAUDE_CONFIG_DIR / CODEX_HOME where the user had moved them."""
    environ = dict(os.environ if environ is None else environ)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_STATE_HOME": str(home / ".local/state"), "XDG_CACHE_HOME": str(home / ".cache")}
    for name, rel in RELOCATING.items():
        if environ.get(name):
            env[name] = str(home / rel)
    return env


def agent_hidden(root: Path, eval_data: list[str], env: dict[str, str]) -> list[Path]:
    """What the agent must not see of a task at ROOT: its `.autoresearch/` (journal, runs,
    logs, other scratch folders) and the `[sandbox] eval_data` paths (evaluation and holdout
    data), expanded against ENV as the runs expand them."""
    return [Path(root).resolve() / ".autoresearch", *(expand_path(p, env) for p in eval_data)]


def agent_spec(scratch: Path, home: Path, hidden: list[Path], *, visible: list[Path] | None = None,
               environ: dict[str, str] | None = None) -> SandboxSpec:
    """The coding agent's sandbox: everything read-only but SCRATCH (its checkout of best) and
    HOME (a private folder, see seed_agent_home); the paths in HIDDEN (the task's
    `.autoresearch/`, evaluation and holdout data) are not there at all; the network is on.
    VISIBLE re-exposes, read-only, paths under /tmp the agent needs (its CLI, say), which the
    private /tmp would otherwise hide. The caller checks `resolve_kind` first."""
    scratch, home = Path(scratch).resolve(), Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SandboxSpec(writable=[scratch], hidden=[Path(p) for p in hidden], visible=list(visible or []),
                       network=True, home_dir=home, env=agent_home_env(home, environ))


def wrap_command(command: str, *, cwd: Path, spec: SandboxSpec, status_fd: int | None = None) -> list[str]:
    """The bwrap argv that runs COMMAND (through /bin/sh) in CWD under SPEC, for every phase.
    STATUS_FD: where bwrap writes its JSON status lines (the PID namespace's init as `child-pid`).

    Mounts in order, later ones on top: the root read-only, a fresh /dev and /proc, an empty
    /tmp, what the run needs from under /tmp read-only, the hidden paths emptied, the
    read-only ones re-exposed, the writable ones bound, then the HOME folder. So a scratch
    folder or a home inside a hidden `.autoresearch/` is still there, and nothing else of it."""
    exe = shutil.which("bwrap") or "bwrap"
    argv = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-pid", "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-uts"]
    if not spec.network:
        argv.append("--unshare-net")
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    for device in gpu_devices():  # the fresh /dev has no GPU nodes: a run on a GPU needs its own
        argv += ["--dev-bind", device, device]
    for path in _needed_under_tmp(cwd, spec):
        argv += ["--ro-bind", str(path), str(path)]
    argv += _hide(spec.hidden)
    inside_hidden = [cwd] if any(_within(Path(cwd).resolve(), h.resolve()) for h in spec.hidden) else []
    for path in [*inside_hidden, *spec.readonly]:
        if path.exists():
            argv += ["--ro-bind", str(path), str(path)]
    for path in spec.writable:
        path.mkdir(parents=True, exist_ok=True)
        argv += ["--bind", str(path), str(path)]
    home = spec.home
    if spec.home_dir is not None:
        spec.home_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        home = str(spec.home_dir)
        argv += ["--bind", home, home]
    else:
        argv += ["--dir", home]
    env = {"HOME": home, "TMPDIR": "/tmp", **spec.env}
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return argv + ["--chdir", str(cwd), "/bin/sh", "-c", command]


# The device nodes a GPU run needs (NVIDIA; AMD through ROCm), re-exposed in the sandbox's /dev.
GPU_DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")


def gpu_devices() -> list[str]:
    """The GPU device nodes of this machine (none on most CPU-only machines)."""
    return sorted({path for pattern in GPU_DEVICE_GLOBS for path in glob.glob(pattern)})


def _hide(paths: list[Path]) -> list[str]:
    """Mounts that make PATHS empty: an empty tmpfs over a folder, /dev/null over a file.
    Symlinks are resolved first, so hiding a link hides what it points to."""
    argv: list[str] = []
    for path in paths:
        real = Path(path).resolve()
        if real.is_dir():
            argv += ["--tmpfs", str(real)]
        elif real.exists():
            argv += ["--ro-bind", "/dev/null", str(real)]
    return argv


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _needed_under_tmp(cwd: Path, spec: SandboxSpec) -> list[Path]:
    """Paths under /tmp that the private /tmp would otherwise hide: the task folder, the
    Python installation, the data and the cache (tests and CI clones often live in /tmp)."""
    tmp = Path("/tmp").resolve()
    candidates = [cwd, Path(sys.prefix), Path(sys.base_prefix), *spec.visible, *spec.readonly]
    cache = os.environ.get("AUTORESEARCH_CACHE")
    if cache:
        candidates.append(Path(cache))
    seen: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if _within(path, tmp) and path.exists() and not any(_within(path, s) for s in seen):
            seen = [s for s in seen if not _within(s, path)] + [path]
    return seen


def agent_home(task_root: Path) -> Path:
    """The agent's private HOME for this task: seeded from the user's agent config before each
    proposal (a copy re-made when the user's changed), kept between proposals (sessions,
    caches), never the user's own. Outside the task folder and outside /tmp (Codex refuses to
    set up its tools under a temporary folder)."""
    key = hashlib.sha256(str(task_root.resolve()).encode()).hexdigest()[:16]
    base = os.environ.get("AUTORESEARCH_AGENT_HOMES") or str(Path.home() / ".cache" / "autoresearch" / "agent-homes")
    return Path(base) / f"{task_root.name}-{key}"
