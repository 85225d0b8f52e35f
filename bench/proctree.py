"""Run a command and watch its whole process tree through /proc: wall time, RSS peaks, and phases split at the
`python -m builder.compile.library` children that `mlcbuild make` starts (bench/build_qwen3_0p6b.py)."""

import os
import subprocess
import threading
import time

POLL_S = 0.05


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB; (0, 0) if the process is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _compile_target(cmd: str) -> str | None:
    """The target of a `python -m builder.compile {json}` child (setarch execs into python: same pid)."""
    if "builder.compile.library" not in cmd:
        return None
    for t in ("webgpu", "cpu"):
        if f'"target": "{t}"' in cmd:
            return t
    return "?"


def run_monitored(cmd: list[str], env=None, cwd=None) -> dict:
    """Run `cmd`, sampling the RSS of its process tree every POLL_S; returns wall time, peaks, phases.

    Phases: "pre_compile" (startup, fetch, source digest, convert), "compile_<target>" while a
    builder.compile child is alive, "post_compile" after the last one exits.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    out_buf, err_buf = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out_buf), (proc.stderr, err_buf))]
    for r in readers:
        r.start()
    cmds: dict[int, str] = {}
    hwm_by_pid: dict[int, int] = {}
    phases: dict[str, dict] = {}
    seen_compile = False
    peak_kb, peak_at, samples = 0, 0.0, 0
    last_t = t0
    while True:
        done = proc.poll() is not None
        now = time.perf_counter()
        pids = _tree(proc.pid) if not done else []
        total = main_kb = 0
        phase_targets = []
        for p in pids:
            if p not in cmds:
                cmds[p] = _cmdline(p)
            rss, hwm = _status_kb(p)
            total += rss
            if p == proc.pid:
                main_kb = rss
            hwm_by_pid[p] = max(hwm_by_pid.get(p, 0), hwm)
            t = _compile_target(cmds[p])
            if t:
                phase_targets.append(t)
        if phase_targets:
            seen_compile = True
            phase = f"compile_{phase_targets[0]}"
        else:
            phase = "post_compile" if seen_compile else "pre_compile"
        ph = phases.setdefault(phase, {"seconds": 0.0, "peak_rss_mb": 0.0, "peak_main_rss_mb": 0.0})
        ph["peak_main_rss_mb"] = max(ph["peak_main_rss_mb"], main_kb * 1.024 / 1000)  # the root process alone
        ph["seconds"] += now - last_t
        ph["peak_rss_mb"] = max(ph["peak_rss_mb"], total * 1.024 / 1000)  # KiB -> MB (1e6 bytes)
        last_t = now
        if total > peak_kb:
            peak_kb, peak_at = total, now - t0
        samples += 1
        if done:
            break
        time.sleep(POLL_S)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join()
    # largest single process (kernel high-water mark: exact, not sampled)
    top = max(hwm_by_pid.items(), key=lambda kv: kv[1]) if hwm_by_pid else (0, 0)
    for ph in phases.values():
        ph["seconds"] = round(ph["seconds"], 2)
        ph["peak_rss_mb"] = round(ph["peak_rss_mb"], 1)
        ph["peak_main_rss_mb"] = round(ph["peak_main_rss_mb"], 1)
    return {"returncode": proc.returncode, "stdout": out_buf[0] if out_buf else "",
            "stderr": err_buf[0] if err_buf else "", "wall_s": round(wall, 2),
            "peak_tree_rss_mb": round(peak_kb * 1.024 / 1000, 1), "peak_at_s": round(peak_at, 2),
            "max_single_hwm_mb": round(top[1] * 1.024 / 1000, 1),
            "max_single_hwm_cmd": " ".join(cmds.get(top[0], "").split()[:4])[:120],
            "processes": len(cmds), "samples": samples, "phases": phases}
