"""The MLC/WebLLM weight layout: params_shard_{i}.bin files plus tensor-cache.json.

tvmjs (`fetchTensorCache`) and TVM's python `tvm.contrib.tvmjs.load_tensor_cache` read it:
{"metadata": {...}, "records": [{"dataPath", "format": "raw-shard", "nbytes", "sha256",
"records": [{"name", "shape", "dtype", "format": "raw", "nbytes", "byteOffset"}]}]}.
Neither loader checks a hash; we add "sha256" per shard and check it ourselves when loading.
"""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from mlcbuild_common.errors import ChecksumMismatch, MlcbuildError
from mlcbuild_common.fsutil import write_bytes_atomic

INDEX = "tensor-cache.json"
SHARD_BYTES = 32 << 20  # the size MLC uses; small enough for browser fetch + Cache API entries
_SHARD_RE = re.compile(r"params_shard_(\d+)\.bin")


class TensorCacheWriter:
    """Streams tensors into shards of at most `shard_bytes` (a bigger tensor gets a shard to itself).

    Output depends only on the sequence of add() calls: no timestamps, little-endian, fixed JSON.
    tensor-cache.json is written last, so its presence means every shard is complete.
    """

    def __init__(self, out_dir: Path, shard_bytes: int = SHARD_BYTES):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_bytes = shard_bytes
        self.shards: list[dict] = []
        self.names: set[str] = set()
        self.param_bytes = 0
        self._file = None
        # an index from an earlier run would point at shards we are about to overwrite
        (self.out_dir / INDEX).unlink(missing_ok=True)

    def add(self, name: str, array: np.ndarray) -> None:
        if name in self.names:
            raise ValueError(f"tensor {name!r} added twice")
        self.names.add(name)
        arr = np.ascontiguousarray(array)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        nbytes = arr.nbytes
        if self._file is not None and self._offset + nbytes > self.shard_bytes:
            self._finish_shard()
        if self._file is None:
            self._start_shard()
        raw = arr.reshape(-1).view(np.uint8)
        self._file.write(raw)
        self._hash.update(raw)
        self._records.append({"name": name, "shape": [int(d) for d in arr.shape], "dtype": arr.dtype.name,
                              "format": "raw", "nbytes": nbytes, "byteOffset": self._offset})
        self._offset += nbytes
        self.param_bytes += nbytes

    def close(self, metadata: dict | None = None) -> dict:
        """Finish the last shard, write tensor-cache.json, drop shards left over from a bigger earlier run."""
        if self._file is not None:
            self._finish_shard()
        index = {"metadata": dict(metadata or {}), "records": self.shards}
        write_bytes_atomic(self.out_dir / INDEX, (json.dumps(index, indent=1) + "\n").encode())
        keep = {s["dataPath"] for s in self.shards}
        for p in self.out_dir.iterdir():
            if _SHARD_RE.fullmatch(p.name) and p.name not in keep:
                p.unlink()
        return index

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()

    def _start_shard(self) -> None:
        name = f"params_shard_{len(self.shards)}.bin"
        self._file = open(self.out_dir / f".{name}.tmp", "wb")  # renamed into place when complete
        self._final = self.out_dir / name
        self._hash = hashlib.sha256()
        self._records: list[dict] = []
        self._offset = 0

    def _finish_shard(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._file.name, self._final)
        self.shards.append({"dataPath": self._final.name, "format": "raw-shard", "nbytes": self._offset,
                            "records": self._records, "sha256": self._hash.hexdigest()})
        self._file = None


def read_index(cache_dir: Path) -> dict:
    path = Path(cache_dir) / INDEX
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MlcbuildError(f"no {INDEX} in {cache_dir}", "convert the weights first (mlcbuild make)") from None
    except (ValueError, OSError) as e:
        raise ChecksumMismatch(f"unreadable {path}: {e}", "rebuild the weights (mlcbuild make)") from None


def iter_tensor_cache(cache_dir: Path, names=None):
    """Yield (name, array) shard by shard, verifying each shard's size and sha256 before using it."""
    cache_dir = Path(cache_dir)
    index = read_index(cache_dir)
    wanted = None if names is None else set(names)
    found = set()
    for shard in index["records"]:
        recs = [r for r in shard["records"] if wanted is None or r["name"] in wanted]
        if not recs:
            continue
        data = _read_verified(cache_dir / shard["dataPath"], shard)
        for rec in recs:
            if rec.get("format", "raw") != "raw":
                raise MlcbuildError(f"{shard['dataPath']}: record {rec['name']} has format {rec['format']!r}",
                                    "only raw records are supported; rebuild with mlcbuild make")
            off, n = rec["byteOffset"], rec["nbytes"]
            arr = np.frombuffer(data, dtype=_np_dtype(rec["dtype"]), count=n // _np_dtype(rec["dtype"]).itemsize,
                                offset=off).reshape(rec["shape"])
            found.add(rec["name"])
            # a subset is copied out so it does not pin the whole shard in memory
            yield rec["name"], (arr if wanted is None else arr.copy())
    if wanted is not None and wanted - found:
        missing = sorted(wanted - found)
        raise MlcbuildError(f"{cache_dir / INDEX} has no tensor {missing[0]}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                            "the weights were converted for a different model; rebuild with mlcbuild make")


def load_tensor_cache(cache_dir: Path, names=None) -> dict[str, np.ndarray]:
    """All tensors (or just `names`) as numpy arrays; raises ChecksumMismatch on a corrupt shard."""
    return dict(iter_tensor_cache(cache_dir, names))


def load_tensor_cache_tvm(cache_dir: Path, device, names=None) -> dict:
    """Like load_tensor_cache, as tvm tensors on `device`; host copies are dropped one shard at a time."""
    import tvm

    return {name: tvm.runtime.tensor(arr, device) for name, arr in iter_tensor_cache(cache_dir, names)}


def read_metadata(cache_dir: Path) -> dict:
    return read_index(cache_dir).get("metadata", {})


def _read_verified(path: Path, shard: dict) -> bytearray:
    fix = "the converted weights are damaged; rebuild them with mlcbuild make"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ChecksumMismatch(f"missing weight shard {path}", fix) from None
    if size != shard["nbytes"]:
        raise ChecksumMismatch(f"{path} has {size} bytes, tensor-cache.json records {shard['nbytes']}", fix)
    data = bytearray(size)
    with open(path, "rb") as f:
        f.readinto(data)
    # older caches written by TVM carry only an md5sum; check whichever hash is there
    for algo in ("sha256", "md5sum"):
        if algo in shard:
            digest = hashlib.new(algo.removesuffix("sum"), data).hexdigest()
            if digest != shard[algo]:
                raise ChecksumMismatch(f"{path}: {algo} {digest[:12]}... does not match tensor-cache.json "
                                       f"({shard[algo][:12]}...)", fix)
            break
    return data


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
