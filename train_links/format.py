"""recursivelink.json, schema v1 (documented in docs/recursivelink.md): trained links plus everything needed to
check that they fit the agents. Tensors are base64 of little-endian f32/f16 bytes, each with its shape and sha256.
The loader trusts nothing: sizes are checked BEFORE any base64 is decoded."""

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import write_bytes_atomic

from .links import expected_shapes
from .patterns import Pattern, Role, from_json

FORMAT, VERSION = "recursivelink", 1
DTYPES = {"f32": "<f4", "f16": "<f2"}
MAX_FILE_BYTES = 2 << 30
MAX_DIM = 1 << 16  # hidden sizes and link widths; caps every declared shape before decoding
MAX_STEPS = 4096
SIZE_FACTOR, META_BYTES = 3, 1 << 20  # a file may be 3x its tensors' base64, plus 1 MiB of metadata


@dataclass
class LinkFile:
    meta: dict  # the whole JSON minus tensor data
    pattern: Pattern
    tensors: dict[str, dict[str, torch.Tensor]]  # link name -> tensor name -> float32 tensor

    def load_into(self, links) -> None:
        """Copy the tensors into a LinkSet built for the same agents and pattern."""
        for kind, key, mod in links.named_links():
            name = f"inner:{key}" if kind == "inner" else key
            mod.load_state_dict(self.tensors[name])


def _encode(t: torch.Tensor, dtype: str, where: str) -> dict:
    a = t.detach().float().cpu().numpy()
    if dtype == "f16" and np.abs(a).max(initial=0) > 65504:
        raise MlcbuildError(f"{where}: values overflow float16", "save with --link-dtype f32")
    raw = a.astype(DTYPES[dtype]).tobytes()
    return {"shape": list(a.shape), "sha256": hashlib.sha256(raw).hexdigest(), "data": base64.b64encode(raw).decode()}


def save(path, agents: dict, pattern: Pattern, links, m: int, rounds: int, dtype: str = "f32",
         training: dict | None = None) -> Path:
    if dtype not in DTYPES:
        raise MlcbuildError(f"link dtype {dtype!r} is not supported", f"use one of {', '.join(DTYPES)}")
    doc = {"format": FORMAT, "version": VERSION, "latent_steps": m, "rounds": rounds, "training": training or {},
           "pattern": pattern.to_json(), "agents": [], "links": []}
    for name in pattern.agents:
        a = agents[name]
        doc["agents"].append({"name": name, "model_id": a.model_id, "weights_sha256": a.weights_sha256,
                              "hidden_size": a.d,
                              "vocab_size": a.model.get_input_embeddings().weight.shape[0],
                              "role": {"system": a.role.system, "user": a.role.user, "target": a.role.target},
                              "slots": list(a.role.slots), "embedding_norm": a.emb_stats()})
    for kind, key, mod in links.named_links():
        name = f"inner:{key}" if kind == "inner" else key
        edge = next((e for e in pattern.edges if e.key == key), None)
        src, dst = (key, key) if kind == "inner" else (edge.src, edge.dst)
        doc["links"].append({"name": name, "kind": kind, "src": src, "dst": dst, "slot": edge.slot if edge else None,
                             "src_dim": mod.d_src, "dst_dim": mod.d_tgt, "width": mod.width, "dtype": dtype,
                             "tensors": {k: _encode(v, dtype, f"{name}.{k}") for k, v in mod.state_dict().items()}})
    return write_json(path, doc)


def write_json(path, doc: dict) -> Path:
    """Write `doc` atomically, with the modes of an ordinary file (fsutil.write_bytes_atomic)."""
    path = Path(path)
    write_bytes_atomic(path, (json.dumps(doc, indent=1) + "\n").encode())
    return path


def _bad(where, what, fix="re-train or re-export the links"):
    return MlcbuildError(f"{where}: {what}", fix)


def _int(v, lo, hi, where, what):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(where, f"{what} must be an integer in [{lo}, {hi}], got {str(v)[:40]!r}")
    return v


def _need(obj, key, typ, where):
    if not isinstance(obj, dict) or key not in obj:
        raise _bad(where, f"missing '{key}'")
    if not isinstance(obj[key], typ):
        raise _bad(where, f"'{key}' has the wrong type ({type(obj[key]).__name__})")
    return obj[key]


def _decode(spec, shape, dtype, where) -> torch.Tensor:
    """One tensor: declared shape must equal the expected one, base64 length must match it, then decode."""
    if not isinstance(spec, dict):
        raise _bad(where, "tensor entry must be an object")
    if _need(spec, "shape", list, where) != list(shape):
        raise _bad(where, f"shape {str(spec['shape'])[:60]} does not match the agents' dims (expected {list(shape)})")
    nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    data, digest = _need(spec, "data", str, where), _need(spec, "sha256", str, where)
    if len(data) != 4 * math.ceil(nbytes / 3):  # checked before decoding: no huge allocations on bad input
        raise _bad(where, f"base64 length {len(data)} does not match shape {list(shape)} in {dtype}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "bad base64 data") from None
    if len(raw) != nbytes:
        raise _bad(where, f"decoded {len(raw)} bytes, expected {nbytes}")
    if hashlib.sha256(raw).hexdigest() != digest:
        raise _bad(where, "sha256 mismatch: the tensor data is corrupted")
    a = np.frombuffer(raw, dtype=DTYPES[dtype]).astype(np.float32).reshape(shape)
    if not np.isfinite(a).all():
        raise _bad(where, "tensor has NaN or infinite values")
    return torch.from_numpy(a.copy())


def _check_dims(p, agents: list[dict], agent_dims: dict[str, int]) -> None:
    for i, a in enumerate(agents):
        name = a["name"]
        if name in agent_dims and agent_dims[name] != a["hidden_size"]:
            raise _bad(f"{p}: agents[{i}]", f"agent {name} has hidden size {a['hidden_size']} here but "
                       f"{agent_dims[name]} in the model", "use the links trained for these models")
    missing = sorted(set(agent_dims) - {a["name"] for a in agents})
    if missing:
        raise _bad(p, f"no links for agent(s) {missing}", "train links for these agents")


def check_dims(lf: "LinkFile", agent_dims: dict[str, int], path) -> None:
    """The same dims check as load(path, agent_dims), on a file already loaded (no second parse)."""
    _check_dims(Path(path), lf.meta["agents"], agent_dims)


def load(path, agent_dims: dict[str, int] | None = None, max_bytes: int = MAX_FILE_BYTES) -> LinkFile:
    """Read and fully validate a recursivelink.json; `agent_dims` (name -> hidden size) checks it against the
    agents actually loaded. Every problem is a one-line MlcbuildError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise _bad(p, "no such file", "pass the recursivelink.json written by train-links")
    if p.stat().st_size > max_bytes:
        raise _bad(p, f"{p.stat().st_size} bytes is larger than the {max_bytes}-byte limit", "check the file")
    try:
        doc = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(p, f"not valid JSON, truncated or corrupted ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(p, "not a recursivelink file (missing \"format\": \"recursivelink\")")
    if doc.get("version") != VERSION:
        raise _bad(p, f"format version {str(doc.get('version'))[:20]} is not supported (this reader reads {VERSION})",
                   "re-export the links with this mlcbuild version")
    m = _int(doc.get("latent_steps"), 1, MAX_STEPS, p, "latent_steps")
    r = _int(doc.get("rounds"), 1, 64, p, "rounds")
    agents = {}
    for i, a in enumerate(_need(doc, "agents", list, p)):
        w = f"{p}: agents[{i}]"
        name = _need(a, "name", str, w)
        if name in agents:
            raise _bad(w, f"duplicate agent {name!r}")
        _int(a.get("hidden_size"), 1, MAX_DIM, w, "hidden_size")
        if not isinstance(a.get("weights_sha256", ""), str) or not isinstance(a.get("model_id", ""), str):
            raise _bad(w, "model_id and weights_sha256 must be strings")
        slots, role = _need(a, "slots", list, w), _need(a, "role", dict, w)
        texts = [role.get("system"), role.get("user"), role.get("target", "answer"), *slots]
        if not all(isinstance(s, str) for s in texts):
            raise _bad(w, "slots and role.system / user / target must be strings")
        norms = _need(a, "embedding_norm", dict, w)
        if not all(isinstance(norms.get(k), int | float) and math.isfinite(norms[k]) for k in ("mean", "std")):
            raise _bad(w, "embedding_norm needs finite mean and std")
        agents[name] = a
    if agent_dims is not None:  # before any tensor is decoded
        _check_dims(p, doc["agents"], agent_dims)
    pobj = _need(doc, "pattern", dict, p)
    try:
        if pobj.get("agents") != list(agents):
            raise _bad(p, f"pattern agents {str(pobj.get('agents'))[:80]} differ from the agents {list(agents)}")
        roles = {n: Role(n, a["role"]["system"], a["role"]["user"], tuple(a["slots"]),
                         a["role"].get("target", "answer")) for n, a in agents.items()}
        pattern = from_json(pobj, roles)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise _bad(p, f"malformed pattern ({type(e).__name__}: {str(e)[:60]})") from None
    except MlcbuildError as e:
        if str(p) in e.format_message():
            raise
        raise MlcbuildError(f"{p}: {e.format_message()}") from None
    want = {f"inner:{n}": ("inner", n, n) for n in agents}
    want.update({e.key: ("outer", e.src, e.dst) for e in pattern.edges})
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    checked = []  # (name, where, dtype, tensor fields, shapes): every link validated before anything is decoded
    for i, link in enumerate(_need(doc, "links", list, p)):
        w = f"{p}: links[{i}]"
        name = _need(link, "name", str, w)
        kind = _need(link, "kind", str, w)
        if kind not in ("inner", "outer"):
            raise _bad(w, f"unknown link kind {kind[:20]!r} (expected inner or outer)")
        src, dst = _need(link, "src", str, w), _need(link, "dst", str, w)
        for a in (src, dst):
            if a not in agents:
                raise _bad(w, f"link {name} names agent {a[:40]!r}, which is not in the file's agents {list(agents)}")
        if name not in want or want[name] != (kind, src, dst) or name in tensors:
            raise _bad(w, f"link {name[:60]!r} ({kind} {src}->{dst}) is not a link of pattern {pattern.name} "
                       "or is listed twice")
        d_src, d_tgt = agents[src]["hidden_size"], agents[dst]["hidden_size"]
        if link.get("src_dim") != d_src or link.get("dst_dim") != d_tgt:
            raise _bad(w, f"dims {link.get('src_dim')}->{link.get('dst_dim')} do not match the agents' "
                       f"hidden sizes {d_src}->{d_tgt}")
        width = _int(link.get("width"), 1, 16 * max(d_src, d_tgt), w, "width")
        dtype = link.get("dtype")
        if dtype not in DTYPES:
            raise _bad(w, f"dtype {str(dtype)[:20]!r} is not supported (expected f32 or f16)")
        shapes = expected_shapes(kind, d_src, d_tgt, width)
        ts = _need(link, "tensors", dict, w)
        if set(ts) != set(shapes):
            raise _bad(w, f"tensors {sorted(ts)[:12]} differ from the expected {sorted(shapes)}")
        checked.append((name, w, dtype, ts, shapes))
        tensors[name] = {}
    missing = sorted(set(want) - set(tensors))
    if missing:
        raise _bad(p, f"missing link(s) {missing}")
    # the tensors' base64 is the file's bulk: a file much larger than its declared tensors carries something else
    data = sum(math.prod(shape) * np.dtype(DTYPES[dt]).itemsize for _, _, dt, _, sh in checked
               for shape in sh.values())
    limit = SIZE_FACTOR * (data * 4 // 3) + META_BYTES
    if p.stat().st_size > limit:
        raise _bad(p, f"{p.stat().st_size} bytes, but its links' tensors need {data} bytes (limit {limit})",
                   "re-export the links with train-links")
    for name, w, dtype, ts, shapes in checked:
        tensors[name] = {k: _decode(ts[k], shape, dtype, f"{w}.{k}") for k, shape in shapes.items()}
    if not isinstance(doc.get("training", {}), dict):
        raise _bad(p, "'training' must be an object")
    meta = {k: v for k, v in doc.items() if k != "links"}
    meta["latent_steps"], meta["rounds"] = m, r
    return LinkFile(meta, pattern, tensors)
