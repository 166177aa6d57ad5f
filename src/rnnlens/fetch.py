"""`rnnlens fetch`: materialise one configured corpus as raw bytes (results/{corpus}/corpus.bin) and its provenance.

Sources: a local `path`, a `url` (+ sha256), the Python standard library (`stdlib`, the offline demo) or a kernel
source `tarball`. The bytes are built under a temporary name and verified before they replace corpus.bin, so a
failed fetch (a wrong sha256, a broken download) leaves the corpus that was there untouched. Fetching is apart from
rnnlens.corpus (splits and the prepared corpus, which every stage imports) so that a change here reruns the fetch
alone, not every stage.
"""

import json
import logging
import sys
import sysconfig
from pathlib import Path

from rnnlens.errors import CorpusError
from rnnlens.io import atomic_copy, atomic_path, download, sha256_of, verify_sha256, write_json

log = logging.getLogger(__name__)

SOURCE_KEYS = ("path", "url", "sha256", "stdlib", "max_bytes", "tarball")  # what a fetch reads of a corpus entry


def stdlib_corpus(max_bytes):
    """The demo corpus: the Python standard library's own .py source, in sorted path order, capped.
    Present on every machine with Python, so the demo runs offline."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/", "lib2to3/tests/")) or "/test" in rel:
            continue
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


def acquire(spec, dest):
    """Materialise one configured corpus as raw bytes at `dest` and return a provenance dict.

    spec keys: path | url (+ sha256) | stdlib (+ max_bytes) | tarball (kernel-style source builder). `dest` is
    replaced only by bytes that passed the sha256 check: on any error it keeps what it held."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if "path" in spec:
            src = Path(spec["path"])
            if not src.is_file():
                raise CorpusError(f"corpus file {src} does not exist. Fix `path:` in the config or put the file there.")
            actual = verify_sha256(src, spec.get("sha256"), f"corpus {src}")
            atomic_copy(src, tmp)
            provenance = {"source": str(src), "sha256": actual}
        elif "url" in spec:
            download(spec["url"], tmp)
            actual = verify_sha256(tmp, spec.get("sha256"), f"download of {spec['url']}")
            if not spec.get("sha256"):
                log.warning(f"no sha256 given for {spec['url']}; recorded the downloaded file's sha256 {actual}. "
                            "Put it in the config to pin this version.")
            provenance = {"source": spec["url"], "sha256": actual, "sha256_pinned": bool(spec.get("sha256"))}
        elif "stdlib" in spec:
            tmp.write_bytes(stdlib_corpus(int(spec.get("max_bytes", 1_000_000))))
            provenance = {"source": f"python {sys.version.split()[0]} standard library", "sha256": sha256_of(tmp)}
        elif "tarball" in spec:
            from rnnlens.kernel import build_from_tarball

            provenance = build_from_tarball(spec["tarball"], tmp)
        else:
            raise CorpusError("a corpus needs one of `path`, `url` (+ `sha256`), `stdlib` or `tarball` in the config")
        if "sha256" in spec and "path" not in spec and "url" not in spec:
            provenance["sha256"] = verify_sha256(tmp, spec["sha256"], "built corpus")
    return provenance


def add_fetch_arguments(parser):
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--spec", required=True, help="the corpus's config entry as JSON")
    parser.add_argument("--out", required=True)
    parser.add_argument("--provenance", required=True)


def run_fetch(args):
    provenance = acquire(json.loads(args.spec), args.out)
    provenance["corpus"] = args.corpus
    write_json(args.provenance, provenance)
    log.info(f"corpus {args.corpus}: {Path(args.out).stat().st_size} bytes, sha256 {provenance['sha256']}")
    return 0
