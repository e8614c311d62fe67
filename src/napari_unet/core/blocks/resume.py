"""Completion records of a block-wise run, under its run signature.

A run keeps a *records folder* beside its output::

    <records>/signature.json     the run signature (:func:`~.plan.run_signature`)
    <records>/done/<block>.npz   one record per finished block, written by the worker *after* the
                                 block's pixels (atomically: temp file + rename): object count and
                                 the label strips at its faces (:mod:`.stitch`)
    <records>/scratch.zarr       instances: labels with per-block temporary ids, before stitching

Resuming trusts these records, never the existence of output chunks (zarr does not write empty
chunks, and a chunk may be half written when a process dies). A record exists only once its
block is completely written, and writing a block again gives the same bytes, so a block that was
finished but not yet recorded when a run died is simply done again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SIGNATURE = "signature.json"
DONE = "done"


def default_records(root: str | os.PathLike, path: str = "") -> Path:
    """``<store>.blocks/<array path>``: the records folder beside an output array's store."""
    root = Path(root)
    base = root.with_name(root.name + ".blocks")
    return base / path.strip("/").replace("/", "_") if path.strip("/") else base


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{where}[{i}]")]
    if isinstance(old, float) and isinstance(new, float) and np.isclose(old, new, rtol=1e-9, atol=0):
        return []
    return [] if old == new else [f"{where or 'signature'}: {old!r} then, {new!r} now"]


def start_records(records: Path, signature: dict[str, Any], *, resume: bool) -> set[int]:
    """Prepare ``records`` for a run; returns the ids of blocks already done.

    ``resume``: continue the run recorded there; its signature must equal ``signature``
    (ValueError naming what differs). Nothing recorded: start afresh. Not ``resume``: any
    earlier records are removed.
    """
    sig_file = records / SIGNATURE
    if resume and sig_file.is_file():
        old = json.loads(sig_file.read_text(encoding="utf-8"))
        diff = _differences(old, json.loads(json.dumps(signature)))
        if diff:
            raise ValueError(
                f"cannot resume the block-wise run recorded in {records}: its signature differs ("
                + "; ".join(diff[:5])
                + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
                + "); run without resume to start again"
            )
        return done_blocks(records)
    if records.exists():
        shutil.rmtree(records)
    (records / DONE).mkdir(parents=True)
    write_atomic(sig_file, json.dumps(signature, indent=1).encode())
    return set()


def done_blocks(records: Path) -> set[int]:
    folder = records / DONE
    if not folder.is_dir():
        return set()
    return {int(p.stem) for p in folder.glob("*.npz") if p.stem.isdigit()}


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(records: Path, block_id: int, **arrays: np.ndarray) -> None:
    """The completion record of one block (after its pixels are written)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(records / DONE / f"{block_id}.npz", buffer.getvalue())


def read_record(records: Path, block_id: int) -> dict[str, np.ndarray]:
    with np.load(records / DONE / f"{block_id}.npz") as data:
        return {k: data[k] for k in data.files}
