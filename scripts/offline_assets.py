"""Vendor the browser libraries of the asv dashboard and the docs site, so that both work without a network.

The libraries, their versions, the files taken from each and their checksums are listed in
``scripts/offline_assets.toml`` (the manifest). One npm tarball per library is fetched with
``npm pack NAME@VERSION`` into a cache folder (``.cache/offline-assets/`` by default, git-ignored), checked
against the manifest's sha512 (the registry's integrity string), and every file taken from it is checked
against its sha256 before it is written. A tarball already in the cache with the right checksum is used as it
is, so once the cache is filled (``--cache`` may point at a copy carried to a machine without internet) both
targets build offline.

Targets:

* ``dashboard``: after ``asv publish``, copies the dashboard libraries into ``HTML_DIR/vendor/`` and rewrites
  ``index.html`` so that each ``<script src=URL>`` / ``<link href=URL>`` that the manifest names in ``replaces``
  points at the local copy (the ``integrity``/``crossorigin`` attributes go, since they are meant for a CDN
  and make a ``file://`` page refuse the script). Where the manifest says ``same_bytes = true``, the local file
  must also match the Subresource-Integrity hash asv pinned on that tag. A page that still references an
  ``http(s)://`` script or stylesheet afterwards is an error.
* ``docs``: copies MathJax (``es5/tex-mml-chtml.js`` and its CHTML web fonts) into
  ``docs/javascripts/vendor/mathjax/`` before ``mkdocs build``; ``mkdocs.yml`` loads it from there.

Usage: ``python scripts/offline_assets.py --target dashboard --html-dir .asv/html`` (``make dashboard``) and
``python scripts/offline_assets.py --target docs`` (``make docs``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scale.cli import Command, option

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "scripts" / "offline_assets.toml"
TARGETS = ("dashboard", "docs")
DOCS_MATHJAX = Path("docs/javascripts/vendor/mathjax")
# <script ... src="..." ...> and <link ... href="..." ...>: one tag, attributes in any order.
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', re.IGNORECASE)


class AssetError(RuntimeError):
    """A checksum, a manifest entry or a page does not match what the manifest promises."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    replaces: str | None
    same_bytes: bool


@dataclass(frozen=True)
class Package:
    name: str
    npm: str
    version: str
    license: str
    license_file: str | None
    tarball: str
    used_by: str
    files: tuple[FileEntry, ...]

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def tarball_name(self) -> str:
        # npm pack names a scoped package @a/b as a-b-VERSION.tgz
        return f"{self.npm.lstrip('@').replace('/', '-')}-{self.version}.tgz"


def load_manifest(path: Path = MANIFEST) -> list[Package]:
    """The manifest's packages; a missing key is reported with the package it belongs to."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    packages = []
    for entry in data.get("package", []):
        label = entry.get("name", "<unnamed>")
        try:
            files = tuple(FileEntry(f["path"], f["sha256"], f.get("replaces"), bool(f.get("same_bytes", False)))
                          for f in entry["file"])
            packages.append(Package(entry["name"], entry["npm"], entry["version"], entry["license"],
                                    entry.get("license_file"), entry["tarball"], entry["used_by"], files))
        except KeyError as exc:
            raise AssetError(f"{path.name}: package {label!r} lacks the key {exc.args[0]!r}") from None
    if not packages:
        raise AssetError(f"{path}: no [[package]] entries")
    return packages


def sri(data: bytes, algorithm: str) -> str:
    """A Subresource-Integrity string ``ALG-BASE64(DIGEST)``."""
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def fetch_tarball(pkg: Package, cache: Path) -> bytes:
    """The package's npm tarball from the cache, else from ``npm pack``; its sha512 must match the manifest."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / pkg.tarball_name
    if not (path.is_file() and sri(path.read_bytes(), "sha512") == pkg.tarball):
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError(f"{pkg.npm}@{pkg.version} is not in the cache {cache} and npm is not installed; "
                             "fill the cache on a machine with npm and network access, or install npm")
        proc = subprocess.run([npm, "pack", f"{pkg.npm}@{pkg.version}", "--silent", "--pack-destination",
                               str(cache)], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not path.is_file():
            raise AssetError(f"npm pack {pkg.npm}@{pkg.version} failed: {proc.stderr.strip()[-400:]}")
    data = path.read_bytes()
    got = sri(data, "sha512")
    if got != pkg.tarball:
        raise AssetError(f"{path.name}: sha512 {got} differs from the manifest's {pkg.tarball}")
    return data


def extract(pkg: Package, tarball: bytes) -> dict[str, bytes]:
    """``path -> bytes`` of the manifest's files (and the license file), each checked against its sha256."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        def read(member: str) -> bytes:
            try:
                handle = tar.extractfile(f"package/{member}")
            except KeyError:
                raise AssetError(f"{pkg.tarball_name} has no file {member!r}") from None
            if handle is None:
                raise AssetError(f"{pkg.tarball_name}: {member!r} is not a regular file")
            return handle.read()

        out = {}
        for entry in pkg.files:
            data = read(entry.path)
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry.sha256:
                raise AssetError(f"{pkg.folder}/{entry.path}: sha256 {digest} differs from the manifest's "
                                 f"{entry.sha256}")
            out[entry.path] = data
        if pkg.license_file:
            out[pkg.license_file] = read(pkg.license_file)
    return out


def write_package(pkg: Package, files: dict[str, bytes], dest: Path) -> None:
    """The package's files under ``dest`` (their paths inside the tarball kept), replacing an older copy."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (dest / "SOURCE.txt").write_text(
        f"{pkg.npm} {pkg.version} ({pkg.license}), from the npm registry: npm pack {pkg.npm}@{pkg.version}\n"
        f"tarball integrity {pkg.tarball}\n", encoding="utf-8")


def _tag_url(tag: str) -> str | None:
    m = re.search(r'\s(?:src|href)="([^"]+)"', tag)
    return html.unescape(m.group(1)) if m else None


def rewrite_page(text: str, local: dict[str, tuple[str, bytes, bool]]) -> tuple[str, list[str]]:
    """``text`` with each tag loading a URL of ``local`` (``url -> (relative path, bytes, same_bytes)``)
    pointed at the local copy, and the list of URLs replaced. A ``same_bytes`` file must match the tag's
    ``integrity`` hash when the tag has one."""
    replaced = []

    def swap(match: re.Match[str]) -> str:
        tag = match.group(0)
        url = _tag_url(tag)
        if url not in local:
            return tag
        rel, data, same = local[url]
        pinned = re.search(r'\sintegrity="([^"]+)"', tag)
        if same and pinned:
            algorithm = pinned.group(1).split("-", 1)[0]
            if sri(data, algorithm) != pinned.group(1):
                raise AssetError(f"{rel} does not match the integrity hash {pinned.group(1)} pinned for {url}")
        replaced.append(url)
        attr = "src" if match.group(1).lower() == "script" else "href"
        tag = re.sub(rf'\s{attr}="[^"]+"', f' {attr}="{rel}"', tag, count=1)
        return _ATTR.sub("", tag)

    return _TAG.sub(swap, text), replaced


def remote_references(text: str) -> list[str]:
    """The http(s) URLs a page still loads as a script or stylesheet (links to other sites do not count)."""
    out = []
    for match in _TAG.finditer(text):
        tag = match.group(0)
        url = _tag_url(tag)
        is_load = match.group(1).lower() == "script" or re.search(r'\srel="(stylesheet|icon|shortcut icon)"', tag)
        if url and is_load and re.match(r"(https?:)?//", url):
            out.append(url)
    return out


def vendor_dashboard(html_dir: Path, packages: list[Package], cache: Path) -> list[str]:
    """Vendor the dashboard's libraries into ``html_dir/vendor`` and point ``index.html`` at them."""
    index = html_dir / "index.html"
    if not index.is_file():
        raise AssetError(f"{index} does not exist: run `asv publish` first")
    local: dict[str, tuple[str, bytes, bool]] = {}
    for pkg in (p for p in packages if p.used_by == "dashboard"):
        files = extract(pkg, fetch_tarball(pkg, cache))
        write_package(pkg, files, html_dir / "vendor" / pkg.folder)
        for entry in pkg.files:
            if entry.replaces:
                local[entry.replaces] = (f"vendor/{pkg.folder}/{entry.path}", files[entry.path], entry.same_bytes)
    text, replaced = rewrite_page(index.read_text(encoding="utf-8"), local)
    missing = sorted(set(local) - set(replaced))
    if missing:
        raise AssetError(f"{index.name} no longer loads {missing}: the manifest does not match this asv "
                         "version's index.html")
    left = remote_references(text)
    if left:
        raise AssetError(f"{index.name} still loads remote files the manifest does not cover: {left}")
    index.write_text(text, encoding="utf-8")
    return replaced


def vendor_docs(docs_dest: Path, packages: list[Package], cache: Path) -> list[str]:
    """Copy MathJax's files into ``docs_dest`` (the folder mkdocs.yml loads it from)."""
    written = []
    for pkg in (p for p in packages if p.used_by == "docs"):
        files = extract(pkg, fetch_tarball(pkg, cache))
        write_package(pkg, files, docs_dest)
        written += [str(docs_dest / e.path) for e in pkg.files]
    if not written:
        raise AssetError("the manifest has no package used by the docs")
    return written


@dataclass
class Config:
    target: str = option("dashboard", "what to vendor into", choices=TARGETS)
    html_dir: Path = option(Path(".asv/html"), "the published asv folder (target dashboard)")
    docs_dest: Path = option(DOCS_MATHJAX, "where MathJax goes (target docs; mkdocs.yml loads it from there)")
    cache: Path = option(Path(".cache/offline-assets"), "folder of the fetched npm tarballs")
    manifest: Path = option(MANIFEST, "the manifest of packages, files and checksums")


def run(cfg: Config) -> int:
    try:
        packages = load_manifest(cfg.manifest)
        if cfg.target == "dashboard":
            done = vendor_dashboard(cfg.html_dir, packages, cfg.cache)
            print(f"{cfg.html_dir / 'index.html'}: {len(done)} CDN references now load from vendor/")
        else:
            done = vendor_docs(cfg.docs_dest, packages, cfg.cache)
            print(f"{cfg.docs_dest}: MathJax vendored ({len(done)} files)")
    except AssetError as exc:
        raise ValueError(str(exc)) from None
    return 0


COMMAND = Command(
    prog="offline_assets",
    description="Vendor the asv dashboard's and the docs' browser libraries (checksummed npm tarballs) so that "
                "the pages load nothing from outside the machine.",
    config=Config,
    run=run,
)
main = COMMAND.main

if __name__ == "__main__":
    raise SystemExit(main())
