"""Edited role prompts: the roles.json the playground exports, applied by `mlcbuild run / eval --roles`.

A links file fixes each role's slots (the edges into it) and records the system and user templates it was trained
with. People may rewrite the templates; the graph stays. One syntax on both sides (web/src/mas/roles.js has the same
rules and messages): `{question}` is the question, `{slot}` is where a hand-off lands, any other `{word}` is refused
rather than kept as literal text, because it is almost always a misspelt slot.

    {"format": "mlcbuild-roles", "version": 1, "pattern": "sequential",
     "roles": {"critic": {"system": "...", "user": "Question: {question}\\nPlan: {plan}\\n..."}}}

Roles left out keep their trained templates; a role may give only "system" or only "user".
"""

import dataclasses
import json
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError
from train_links.patterns import MARKER

FORMAT = "mlcbuild-roles"
VERSION = 1
FIELDS = ("system", "user")
FIX = "edit the template in the playground (it shows the slots) or export the roles again"


def template_errors(slots, system: str, user: str) -> list[str]:
    """What is wrong with one role's templates, as the page shows it (empty: fine)."""
    marks = MARKER.findall(system) + MARKER.findall(user)
    errors = []
    if "question" not in marks:
        errors.append("no {question}: the agent would never see the question")
    unknown = sorted(set(marks) - {"question", *slots})
    if unknown:
        have = ", ".join(f"{{{s}}}" for s in slots) or "none"
        errors.append(f"unknown slot {', '.join(f'{{{u}}}' for u in unknown)} (this role's slots: {have})")
    missing = [s for s in slots if s not in marks]
    if missing:
        errors.append(f"no {', '.join(f'{{{s}}}' for s in missing)}: the hand-off into it would be dropped")
    return errors


def load(path) -> dict:
    """The roles document at `path` (only read and shape-checked here; apply() checks it against a pattern)."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MlcbuildError(f"--roles {path}: no such file",
                            "export one from the playground (Download roles)") from None
    except (OSError, ValueError) as e:
        raise MlcbuildError(f"--roles {path}: not JSON ({e})", "export it again from the playground") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("roles"), dict):
        raise MlcbuildError(f"--roles {path}: not a roles file (want format {FORMAT!r} and a 'roles' object)",
                            "export it from the playground (Download roles)")
    if doc.get("version") != VERSION:
        raise MlcbuildError(f"--roles {path}: version {doc.get('version')!r}, this mlcbuild reads {VERSION}",
                            "export it again with this mlcbuild's playground")
    doc["_source"] = str(path)
    return doc


def apply(pattern, doc: dict):
    """`pattern` with the roles' templates replaced by the document's (one clear error for the first bad role)."""
    where = f"--roles {doc.get('_source', 'roles.json')}"
    roles = {r.name: r for r in pattern.roles}
    unknown = sorted(set(doc["roles"]) - set(roles))
    if unknown:
        raise MlcbuildError(f"{where}: no role {', '.join(unknown)} in pattern {pattern.name}",
                            f"its roles are {', '.join(roles)}")
    for name, edit in doc["roles"].items():
        bad = [k for k in edit if k not in FIELDS] if isinstance(edit, dict) else ["(not an object)"]
        if bad or not all(isinstance(edit.get(k, ""), str) for k in FIELDS):
            raise MlcbuildError(f"{where}: role {name} must hold only 'system' and 'user' strings (got "
                                f"{', '.join(bad) or 'a non-string'})", FIX)
        role = roles[name]
        system, user = edit.get("system", role.system), edit.get("user", role.user)
        errors = template_errors(role.slots, system, user)
        if errors:
            raise MlcbuildError(f"{where}: role {name}: {'; '.join(errors)}", FIX)
        roles[name] = dataclasses.replace(role, system=system, user=user)
    return dataclasses.replace(pattern, roles=tuple(roles[r.name] for r in pattern.roles))
