#!/usr/bin/env python3
"""Check every eval case in this directory (stdlib only).

For each case folder NN-name/ it checks that
  (d) case.toml has every required key, every protected file exists in repo/,
      and repo/ holds no build output or VCS data (and no file of 100+ lines);
  (a) the check FAILS on an untouched copy of repo/;
  (b) solution.patch applies cleanly (patch -p1, no fuzz, no offset), touches
      no protected file, and the check PASSES after it;
  (c) wrong.patch applies cleanly, touches no protected file, and the check
      still FAILS after it.
Every run happens in a fresh temporary copy; repo/ itself is never touched.

Usage: python3 evals/verify.py [-v] [CASE ...]
  CASE  a folder name or its number (e.g. 03); default: every case
  -v    print the check's output when an expectation is not met
Prints one line per case and exits 1 if any case failed.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover - older Pythons
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))
CASE_DIR = re.compile(r"^(\d\d)-[a-z0-9][a-z0-9-]*$")
CASE_FILES = {"case.toml", "repo", "solution.patch", "wrong.patch"}
FORBIDDEN = {"__pycache__", ".git", "target", "Cargo.lock", ".pytest_cache"}
MAX_LINES = 100
# A check that runs longer than this is killed and counts as a failure.
MAX_CHECK_SECONDS = 600


class CaseError(Exception):
    pass


# ---------------------------------------------------------------- case.toml

def _parse_value(text):
    """The subset of TOML values the cases use: strings, integers, arrays of strings."""
    text = text.strip()
    if text.startswith('"'):
        return _unquote(text)
    if text.startswith("["):
        inner = text[1:text.rindex("]")]
        return [_unquote(s.strip()) for s in re.findall(r'"(?:[^"\\]|\\.)*"', inner)]
    if re.fullmatch(r"[+-]?\d[\d_]*", text):
        return int(text.replace("_", ""))
    if text in ("true", "false"):
        return text == "true"
    raise CaseError(f"case.toml: cannot read value {text!r}")


def _unquote(s):
    m = re.match(r'"((?:[^"\\]|\\.)*)"', s)
    if not m:
        raise CaseError(f"case.toml: bad string {s!r}")
    return json.loads(m.group(0))  # TOML basic-string escapes are JSON's


def minimal_toml(text):
    """A fallback for Pythons without tomllib: key = value lines, one level of
    [tables], \"\"\"multi-line\"\"\" strings, # comments."""
    data, table = {}, None
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]") and "=" not in stripped:
            table = data.setdefault(stripped[1:-1].strip(), {})
            continue
        key, _, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if value.startswith('"""'):
            body = value[3:]
            while '"""' not in body:
                body += "\n" + next(lines)
            body = body[:body.index('"""')]
            parsed = body[1:] if body.startswith("\n") else body
        else:
            value = re.sub(r"\s+#[^\"\]]*$", "", value)
            parsed = _parse_value(value)
        (table if table is not None else data)[key] = parsed
    return data


def load_case(path):
    with open(path, "rb") as f:
        raw = f.read()
    if tomllib is not None:
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise CaseError(f"case.toml: {e}")
    return minimal_toml(raw.decode("utf-8"))


def check_case_toml(case, repo):
    problems = []
    for key, kind in (("title", str), ("description", str)):
        if not isinstance(case.get(key), kind) or not case[key].strip():
            problems.append(f"{key} missing or empty")
    tags = case.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        problems.append("tags must be a non-empty list of strings")
    if case.get("difficulty") not in (1, 2, 3):
        problems.append("difficulty must be 1, 2 or 3")
    for key in ("check", "protected"):
        v = case.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
            problems.append(f"{key} must be a non-empty list of strings")
    limits = case.get("limits")
    if not isinstance(limits, dict):
        problems.append("[limits] missing")
    else:
        for key in ("steps", "tokens", "seconds"):
            if not isinstance(limits.get(key), int) or limits[key] <= 0:
                problems.append(f"limits.{key} must be a positive integer")
    for p in case.get("protected") or []:
        if isinstance(p, str) and not os.path.isfile(os.path.join(repo, p)):
            problems.append(f"protected file {p} is not in repo/")
    return problems


def check_repo_tree(repo):
    problems = []
    for root, dirs, files in os.walk(repo):
        for name in dirs + files:
            if name in FORBIDDEN or name.endswith(".pyc"):
                problems.append(f"repo/ holds {os.path.relpath(os.path.join(root, name), repo)}")
        dirs[:] = [d for d in dirs if d not in FORBIDDEN]
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                n = f.read().count(b"\n")
            if n >= MAX_LINES:
                problems.append(f"{os.path.relpath(path, repo)} has {n} lines (keep files under {MAX_LINES})")
    return problems


# ---------------------------------------------------------------- patches

def patched_paths(patch_file):
    """The repo-relative paths a unified diff names in its ---/+++ headers."""
    paths = set()
    with open(patch_file, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^(?:---|\+\+\+) (\S+)", line)
            if m and m.group(1) != "/dev/null":
                p = m.group(1)
                paths.add(p.split("/", 1)[1] if "/" in p else p)
    return paths


def digest(root, rel):
    path = os.path.join(root, rel)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def apply_patch(copy, patch_file):
    """Applies patch_file in copy; returns None or why it did not apply cleanly."""
    r = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--fuzz=0", "--no-backup-if-mismatch",
         "-i", patch_file],
        cwd=copy, capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        return f"does not apply: {out.splitlines()[-1] if out else 'patch failed'}"
    if re.search(r"\b(offset|fuzz)\b", out, re.I):
        return f"applies only with offset/fuzz: {' '.join(out.split())}"
    return None


# ---------------------------------------------------------------- runs

def run_check(copy, argv, seconds):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        r = subprocess.run(argv, cwd=copy, capture_output=True, text=True, env=env,
                           timeout=min(seconds, MAX_CHECK_SECONDS))
    except FileNotFoundError:
        raise CaseError(f"check command not found: {argv[0]}")
    except subprocess.TimeoutExpired:
        return 124, f"(killed after {min(seconds, MAX_CHECK_SECONDS)} s)"
    return r.returncode, (r.stdout + r.stderr)


def fresh_copy(repo, tmp, name):
    dest = os.path.join(tmp, name)
    shutil.copytree(repo, dest)
    return dest


def verify(case_dir, verbose=False):
    """Returns a list of problems (empty: the case is ok)."""
    name = os.path.basename(case_dir)
    repo = os.path.join(case_dir, "repo")
    problems = []
    present = set(os.listdir(case_dir))
    if present != CASE_FILES:
        missing, extra = CASE_FILES - present, present - CASE_FILES
        if missing:
            problems.append(f"missing {', '.join(sorted(missing))}")
        if extra:
            problems.append(f"unexpected {', '.join(sorted(extra))}")
        if missing:
            return problems
    case = load_case(os.path.join(case_dir, "case.toml"))
    problems += check_case_toml(case, repo)
    problems += check_repo_tree(repo)
    if problems:
        return problems
    argv, protected = case["check"], case["protected"]
    seconds = case["limits"]["seconds"]

    def expect(copy, want_pass, label):
        code, out = run_check(copy, argv, seconds)
        if (code == 0) != want_pass:
            msg = f"{label}: check {'failed' if want_pass else 'passed'} (exit {code})"
            if verbose:
                msg += "\n    " + "\n    ".join(out.strip().splitlines()[-15:])
            problems.append(msg)

    with tempfile.TemporaryDirectory(prefix=f"eval-{name}-") as tmp:
        # (a) the untouched repo fails
        expect(fresh_copy(repo, tmp, "untouched"), False, "untouched repo")
        # (b) solution passes, (c) wrong fix still fails
        for patch_name, want_pass in (("solution.patch", True), ("wrong.patch", False)):
            patch_file = os.path.join(case_dir, patch_name)
            touched = patched_paths(patch_file) & set(protected)
            if touched:
                problems.append(f"{patch_name} touches protected {', '.join(sorted(touched))}")
                continue
            if not patched_paths(patch_file):
                problems.append(f"{patch_name} names no file")
                continue
            copy = fresh_copy(repo, tmp, patch_name)
            before = {p: digest(copy, p) for p in protected}
            why = apply_patch(copy, patch_file)
            if why:
                problems.append(f"{patch_name} {why}")
                continue
            changed = [p for p in protected if digest(copy, p) != before[p]]
            if changed:
                problems.append(f"{patch_name} changed protected {', '.join(changed)}")
                continue
            expect(copy, want_pass, f"after {patch_name}")
    return problems


def main(args):
    verbose = "-v" in args
    wanted = [a for a in args if a != "-v"]
    cases = sorted(d for d in os.listdir(HERE)
                   if os.path.isdir(os.path.join(HERE, d)) and CASE_DIR.match(d))
    failed, layout_ok = 0, True
    # Numbering: 01, 02, … with no gaps, in order of difficulty.
    numbers = [int(CASE_DIR.match(d).group(1)) for d in cases]
    if numbers != list(range(1, len(cases) + 1)):
        print(f"FAIL numbering: case folders are {numbers}, expected 1..{len(cases)}")
        layout_ok = False
    last_difficulty = 0
    if wanted:
        cases = [d for d in cases if d in wanted or d[:2] in wanted]
        if not cases:
            print(f"no case matches {' '.join(wanted)}")
            return 2
    for d in cases:
        start = time.monotonic()
        try:
            problems = verify(os.path.join(HERE, d), verbose)
        except CaseError as e:
            problems = [str(e)]
        try:
            case = load_case(os.path.join(HERE, d, "case.toml"))
            difficulty = case.get("difficulty", 0)
        except (CaseError, OSError):
            case, difficulty = {}, 0
        if not wanted and isinstance(difficulty, int):
            if difficulty < last_difficulty:
                problems.append(f"difficulty {difficulty} after a case of difficulty {last_difficulty}")
            last_difficulty = max(last_difficulty, difficulty)
        took = time.monotonic() - start
        if problems:
            failed += 1
            print(f"FAIL {d}: " + "; ".join(problems))
        else:
            print(f"ok   {d} (difficulty {difficulty}, {took:.1f} s)")
        sys.stdout.flush()
    print(f"{len(cases) - failed} of {len(cases)} cases ok")
    return 1 if failed or not layout_ok else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
