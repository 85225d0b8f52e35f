"""The table `mlcbuild make` prints at the end of a build."""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render_summary(res) -> str:
    m = res.manifest
    files = m["files"]
    weights = sum(r["size"] for n, r in files.items() if n.startswith("params_shard_"))
    shards = sum(1 for n in files if n.startswith("params_shard_"))
    src = m["source"]
    rows = [
        ("model", f"{m['name']} ({m['model_type']}, hidden {m['hidden_size']})"),
        ("source", f"{src['model_id']} @ {src['revision']}"
         + ("  [RANDOM WEIGHTS: a tiny test model, not a real LLM]" if src["synthetic_random_weights"] else "")),
        ("quantization", m["quantization"]),
        ("weights", f"{_mb(weights)} in {shards} shard(s)"),
    ]
    for target, lib in m["libs"].items():
        rows.append((f"{target} lib", f"{lib} ({_mb(files[lib]['size'])})"))
    if m.get("links"):
        origin = {"shipped": ", shipped with mlcbuild for these weights", "trained": ", trained now"}
        rows.append(("links", f"{m['links']} ({_mb(files[m['links']]['size'])}{origin.get(m.get('links_from'), '')})"))
    for shared in getattr(res, "shared_links", ()):
        rows.append(("shared links", f"{shared} (shipped, joins this build with others in {shared.parent.parent})"))
    t = res.timings
    steps = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items() if k.endswith("_s"))
    rows.append(("time", steps))
    salvaged = set(getattr(res, "salvaged", ()))
    rows.append(("reused", ", ".join(f"{r} (finished by a killed run)" if r in salvaged else r for r in res.reused)
                 or "nothing (fresh build)"))
    rows.append(("output", str(res.out)))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
