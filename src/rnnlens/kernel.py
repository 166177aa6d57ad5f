"""Build a Linux-kernel corpus from a source tarball, so users can rebuild it themselves.

Deterministic: for each include directory in the given order, take the files matching the suffixes, sorted by
relative path in code-point order, and concatenate them with no separator until the total first exceeds the
byte budget (the file that crosses it is taken whole), as the corpus in shared data was made.
"""

import fnmatch
import logging
import tarfile
from pathlib import Path

from rnnlens.errors import CorpusError
from rnnlens.io import atomic_write_bytes, download, sha256_of, verify_sha256

log = logging.getLogger(__name__)


def _strip_top(name):
    # kernel tarballs hold everything under one top folder (linux-6.1/...)
    parts = name.split("/", 1)
    return parts[1] if len(parts) == 2 else ""


def select_files(names, include_dirs, patterns):
    """Relative paths in corpus order: by include dir (config order), then sorted code-point order."""
    chosen = []
    for directory in include_dirs:
        prefix = directory.rstrip("/") + "/"
        in_dir = sorted(n for n in names if n.startswith(prefix)
                        and any(fnmatch.fnmatchcase(n.rsplit("/", 1)[-1], p) for p in patterns))
        chosen.append(in_dir)
    return chosen


def build_corpus_from_tar(tar_path, include_dirs, patterns, max_bytes):
    """-> (corpus bytes, list of files used)."""
    try:
        tar = tarfile.open(tar_path, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise CorpusError(f"{tar_path} is not a readable tar archive ({err}). Check the tarball url/sha256.") from err
    with tar:
        members = {_strip_top(m.name): m for m in tar.getmembers() if m.isfile()}
        groups = select_files(members, include_dirs, patterns)
        chunks, used, total = [], [], 0
        for group in groups:
            for rel in group:
                if max_bytes and total > max_bytes:
                    break
                data = tar.extractfile(members[rel]).read()
                chunks.append(data)
                used.append(rel)
                total += len(data)
            if max_bytes and total > max_bytes:
                break
    if not used:
        raise CorpusError(f"no file in {tar_path} matches dirs {include_dirs} and patterns {patterns}. "
                          "Fix `tarball.include_dirs` / `tarball.patterns` in the config.")
    log.info(f"built corpus from {len(used)} files, {total} bytes")
    return b"".join(chunks), used


def build_from_tarball(spec, dest):
    """spec: url or path, sha256 (of the tarball), include_dirs, patterns, max_bytes."""
    dest = Path(dest)
    if "path" in spec:
        tar_path = Path(spec["path"])
        if not tar_path.is_file():
            raise CorpusError(f"kernel tarball {tar_path} does not exist. Fix `tarball.path` in the config.")
    else:
        tar_path = dest.with_name("kernel-source.tar")
        if not (tar_path.exists() and spec.get("sha256") and sha256_of(tar_path) == spec["sha256"]):
            download(spec["url"], tar_path)
    actual = verify_sha256(tar_path, spec.get("sha256"), f"kernel tarball {spec.get('url', tar_path)}")
    if not spec.get("sha256"):
        log.warning(f"no sha256 given for the kernel tarball; recorded {actual}. Put it in the config to pin it.")
    data, used = build_corpus_from_tar(tar_path, spec.get("include_dirs", ["kernel"]),
                                       spec.get("patterns", ["*.c", "*.h"]), int(spec.get("max_bytes", 0)))
    atomic_write_bytes(dest, data)
    # the files used go into the provenance (a declared output), not a file of their own beside the corpus
    return {"source": spec.get("url", str(tar_path)), "tarball_sha256": actual, "files": len(used),
            "file_list": used, "sha256": sha256_of(dest)}
