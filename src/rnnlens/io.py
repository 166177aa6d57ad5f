"""Every file rnnlens writes goes through here: outputs are complete or absent.

`atomic_path` hands out a unique temporary name in the target's own folder (so the final rename stays on one file
system and is atomic) and renames it over the target only when the block finishes; on an error, or when a job is
killed mid-write, the temporary file is removed or left under a name no rule expects. The finished file gets the
mode a plain open() would give it (0666 less the umask), not tempfile's private 0600, so a group can read a shared
results folder. Also: sha256, downloads, CSV / JSON / text, Parquet with rnnlens metadata, figures, and torch files
(saved and loaded safely).
"""

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import urllib.request
from pathlib import Path

from rnnlens.errors import CorpusError, InputError, RnnlensError

log = logging.getLogger(__name__)

META_KEY = b"rnnlens"  # Parquet file metadata key holding the rnnlens metadata as JSON


def current_umask():
    """The process's umask, read without changing it where the kernel reports it (Linux /proc), else by setting and
    restoring it (the only portable way)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` with the same suffix (writers that pick a format from it, such as
    savefig and np.save, still see it); rename it to `path` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        tmp.chmod(0o666 & ~current_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; when the block ends without an error it takes the place of `path`
    whole (the old folder and every file in it go), so the folder never mixes the files of two runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700
        if path.exists():
            os.replace(path, old)  # a rename cannot replace a folder that has files: move it aside first
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent=2):
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_csv(frame, path, **to_csv):
    """A pandas DataFrame as CSV (no index unless to_csv says otherwise)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **{"index": False, **to_csv})
    return Path(path)


def atomic_copy(src, path):
    with atomic_path(path) as tmp:
        shutil.copyfile(src, tmp)
    return Path(path)


def write_table(table, path, meta=None):
    """An Arrow table as Parquet with the rnnlens metadata dict (JSON under META_KEY)."""
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta or {}).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def cut_short(path, what, err):
    """The error for an input file that cannot be read to its end: one line, naming the file and the fix."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return InputError(f"{path} is not a complete {what} ({reason}); it was probably cut short (a job killed while "
                      "writing it, a full disk, a partial copy). Delete it and rerun the workflow (or the command "
                      "that wrote it) to make it again.")


def parquet_schema(path):
    """The schema (and metadata) of a Parquet file; an incomplete file raises cut_short's InputError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except pa.ArrowInvalid as err:
        raise cut_short(path, "Parquet file", err) from err


def read_parquet(path, columns=None):
    """A Parquet file as an Arrow table; an incomplete file raises cut_short's InputError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except pa.ArrowInvalid as err:
        raise cut_short(path, "Parquet file", err) from err


def write_parquet(frame, path, meta=None):
    """A pandas DataFrame as Parquet with the rnnlens metadata dict."""
    import pyarrow as pa

    return write_table(pa.Table.from_pandas(frame, preserve_index=False), path, meta)


def save_figures(fig, paths, dpi=150, **savefig):
    """Save one figure under each path (format from the suffix), then close it."""
    import matplotlib.pyplot as plt

    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **{"format": path.suffix.lstrip(".") or "png", "dpi": dpi, "bbox_inches": "tight",
                                **savefig})
    plt.close(fig)


def torch_save(obj, path):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def torch_load(path, map_location="cpu"):
    """Load a .pt file written by rnnlens: tensors, numbers, strings and containers only (weights_only), so a file
    from elsewhere cannot run code while it is read."""
    import zipfile

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError) as err:
        if zipfile.is_zipfile(path):  # a whole file (torch.save writes a zip): some other problem
            raise
        raise cut_short(path, "PyTorch file", err) from err
    except pickle.UnpicklingError as err:
        raise RnnlensError(f"{path} holds objects other than tensors and plain data, so it was not loaded (loading "
                           "it could run code). Use a model file written by rnnlens from a trusted source.") from err


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected, what):
    actual = sha256_of(path)
    if expected and actual != expected.lower():
        raise CorpusError(f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}; the file is "
                          "corrupt or a different version. Fix the file, or set the corpus's sha256 in the config to "
                          "the hash of the file you mean to use.")
    return actual


def download(url, dest):
    log.info(f"downloading {url}")
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
    except OSError as err:
        raise CorpusError(f"could not download {url}: {err}. Check the address and the network, or download the file "
                          "yourself and give it as `path:` in the config.") from err
    return Path(dest)
