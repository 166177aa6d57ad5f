"""Say why before rerunning: every job the workflow would run for the current config, grouped by rule and reason,
naming the module whose code changed or the setting whose value changed, e.g.

    12 train jobs: rnnlens/lru.py changed
    12 evaluate jobs: after train reruns

It reads a dry run of Snakemake (`snakemake -n`, run in the workflow's folder with the arguments you give after
`--`) and compares each job's stored params with the current ones: every rule's `code` param names the modules
the job executes with a hash of each (rnnlens.fingerprint), so a changed hash names its module.
"""

import ast
import base64
import json
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

from rnnlens.errors import InputError, RnnlensError
from rnnlens.fingerprint import parse_fingerprint


JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", re.M)
CODE = re.compile(r"^(?:\S+:[0-9a-f]{12})(?: \S+:[0-9a-f]{12})*$")
# a Python literal in Snakemake's comma-joined list of param reprs
LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,]+")


def planned_jobs(text):
    """Jobs of a dry run's output -> [(rule, wildcards text, reason text, {wildcard: value}, first output)], the
    target rule `all` left out."""
    jobs = []
    for match in JOB.finditer(text):
        rule, body = match.group(1), match.group(2)
        if rule == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        named = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if "=" in kv)
        output = fields.get("output", "").split(", ")[0]
        jobs.append((rule, ", ".join(named.values()), fields.get("reason", ""), named, output))
    return jobs


def rule_commands(rules_dir):
    """{rule: the rnnlens commands its shell runs}, read from the workflow's rule files."""
    commands = {}
    for path in sorted(Path(rules_dir).glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule |checkpoint )", path.read_text()):
            match = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if match:
                shell = block.split("    shell:", 1)[-1]
                commands[match.group(1)] = tuple(sorted(set(re.findall(r"python -m rnnlens ([a-z0-9-]+)", shell))))
    return commands


def stored_code(output, metadata=Path(".snakemake/metadata")):
    """The code param Snakemake stored with the job that made `output` ({module: hash}), or None."""
    if not output:
        return None
    record = metadata / base64.urlsafe_b64encode(output.encode()).decode()
    try:
        params = json.loads(record.read_text()).get("params") or []
    except (OSError, ValueError):
        return None
    for value in _literals(",".join(params)):
        if isinstance(value, str) and CODE.match(value):
            return parse_fingerprint(value)
    return None


def code_changes(rule, wildcards, output, commands):
    """Modules whose hash changed since the job last ran (for a job Snakemake plans only because an upstream job
    reruns, it does not compare params itself): the stored code param against the current fingerprint."""
    from rnnlens.fingerprint import module_hashes
    from rnnlens.ids import parse_model_id

    if not commands.get(rule):
        return []
    old = stored_code(output)
    if not old:
        return []
    model = wildcards.get("model") or wildcards.get("base")
    try:
        arch = parse_model_id(model).arch if model else None
        new = module_hashes(*commands[rule], arch=arch)
    except (ValueError, KeyError, RnnlensError):
        return []
    return [f"{m} changed" for m in sorted(set(old) & set(new)) if old[m] != new[m]]


def _literals(text):
    values = []
    for token in LITERAL.findall(text.strip()):
        token = token.strip()
        if not token or token == "<nothing exclusive>":
            continue
        try:
            values.append(ast.literal_eval(token))
        except (ValueError, SyntaxError):
            values.append(token)
    return values


def _settings_diff(old, new):
    """Keys of two JSON settings objects whose values differ: 'batch_size 8 -> 16'."""
    keys = sorted(set(old) | set(new))
    return [f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys if old.get(k) != new.get(k)]


def params_reasons(before, now):
    """What changed between a job's exclusive params before and now: module names and setting values."""
    old, new = _literals(before), _literals(now)
    reasons = []
    old_code = [parse_fingerprint(v) for v in old if isinstance(v, str) and CODE.match(v)]
    new_code = [parse_fingerprint(v) for v in new if isinstance(v, str) and CODE.match(v)]
    if old_code or new_code:
        a, b = (old_code or [{}])[0], (new_code or [{}])[0]
        changed = sorted(m for m in set(a) | set(b) if a.get(m) != b.get(m))
        if a and b:
            reasons += [f"{m} changed" if m in a and m in b else (f"{m} added" if m in b else f"{m} no longer used")
                        for m in changed]
        else:  # a fingerprint in another format (before this version): the code record is new
            reasons.append("code fingerprint recorded anew")
    rest_old = [v for v in old if not (isinstance(v, str) and CODE.match(v))]
    rest_new = [v for v in new if not (isinstance(v, str) and CODE.match(v))]
    objects_old = [json.loads(v) for v in rest_old if isinstance(v, str) and v.startswith("{")]
    objects_new = [json.loads(v) for v in rest_new if isinstance(v, str) and v.startswith("{")]
    if len(objects_old) == 1 and len(objects_new) == 1:
        reasons += [f"setting {d}" for d in _settings_diff(objects_old[0], objects_new[0])]
        rest_old = [v for v in rest_old if not (isinstance(v, str) and v.startswith("{"))]
        rest_new = [v for v in rest_new if not (isinstance(v, str) and v.startswith("{"))]
    if rest_old or rest_new:
        shown = lambda values: ", ".join(str(v) for v in values) or "-"  # noqa: E731
        reasons.append(f"param {shown(rest_old)} -> {shown(rest_new)}")
    return reasons


def job_reasons(reason):
    """Snakemake's reason text of one job -> short reasons."""
    out = []
    for part in (p.strip() for p in reason.split("; ")):
        if part.startswith("Params have changed"):
            match = re.search(r"before: (.*?) now: (.*?)\s*$", part)
            out += params_reasons(match.group(1), match.group(2)) if match else ["params changed"]
        elif part.startswith("Missing output files"):
            out.append("output missing")
        elif part.startswith("Input files updated by another job"):
            out.append("after an upstream job reruns")
        elif part.startswith("Updated input files"):
            out.append("input files changed: " + part.split(": ", 1)[-1])
        elif part.startswith("Code has changed"):
            out.append("the rule's shell command changed")
        elif part.startswith("Set of input files has changed"):
            out.append("its set of input files changed")
        elif part.startswith("Software environment"):
            out.append("its software environment changed")
        elif part.startswith("Incomplete output"):
            out.append("an earlier run left it incomplete")
        elif part:
            out.append(part)
    return out or ["(no reason given)"]


def summarise(jobs, commands=None):
    """[(rule, wildcards, reason, named wildcards, output)] -> {(rule, why): [wildcards...]} in plan order; a job
    with a code or setting change is listed under those (its own reasons; for one planned after an upstream job,
    the modules changed since it ran, when `commands` maps rules to their rnnlens commands), otherwise under its
    first reason."""
    groups = OrderedDict()
    for rule, wildcards, reason, named, output in jobs:
        reasons = job_reasons(reason)
        specific = [r for r in reasons if r != "after an upstream job reruns"]
        if not specific and commands is not None:
            specific = code_changes(rule, named, output, commands)
            if specific:
                specific.append("and after an upstream job reruns")
        why = "; ".join(specific) if specific else reasons[0]
        groups.setdefault((rule, why), []).append(wildcards)
    return groups


def report(groups, show=3):
    if not groups:
        return "nothing to run: every result is up to date"
    lines = []
    for (rule, why), members in groups.items():
        label = f"{len(members)} {rule} job{'s' if len(members) != 1 else ''}: {why}"
        named = [m for m in members if m]
        if named:
            more = f", ... ({len(named) - show} more)" if len(named) > show else ""
            label += f"   [{'; '.join(named[:show])}{more}]"
        lines.append(label)
    total = sum(len(m) for m in groups.values())
    return "\n".join(lines + [f"{total} jobs in all"])


def add_stale_arguments(parser):
    parser.add_argument("--show", type=int, default=3, help="jobs named per line (default 3)")
    parser.add_argument("snakemake_args", nargs="*", metavar="-- SNAKEMAKE_ARGS",
                        help="passed to `snakemake -n`, e.g. -- --configfile my.yaml")


def run_stale(args):
    """List every job the workflow would rerun for the current config, grouped by rule and reason (the module whose
    code changed, the setting whose value changed, a missing output, an upstream rerun). Run it in the workflow's
    folder; arguments after `--` go to Snakemake (e.g. `rnnlens stale -- --configfile my.yaml`)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args.snakemake_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = " | ".join(out.strip().splitlines()[-3:])
        raise InputError(f"the dry run failed (snakemake exit {proc.returncode}): {tail}")
    from rnnlens import fingerprint

    if Path("src", "rnnlens").is_dir():  # hash the workflow's own package, as its rules do (common.smk)
        fingerprint.SRC = Path("src", "rnnlens").resolve()
        fingerprint._closure.cache_clear()
    print(report(summarise(planned_jobs(out), rule_commands(Path("workflow") / "rules")), show=args.show))
    return 0
