"""The interface's gettext catalogs: where they are, compiling them, and a tool to add messages.

The source of truth is one .po file per language, portal/translations/<lang>/LC_MESSAGES/messages.po,
whose msgids are short keys ("nav_leads", "err_setting"), not English sentences: the code and the
templates ask for a key (`t('nav_leads')`), and every catalog, English included, says what it reads
as. The .po files are compiled to .mo at start into a cache directory (never committed), keyed by a
hash of the sources, so a changed catalog is never served stale.

    python -m portal.i18n_catalogs check                    # every key translated in every catalog
    python -m portal.i18n_catalogs add KEY --en TEXT --vi TEXT
    python -m portal.i18n_catalogs import-dict FILE.py      # carry over {"key": {"en": .., "vi": ..}} dicts
        [--base BASE.py]                                     # ... changed since BASE.py (three-way)
    python -m portal.i18n_catalogs new-language th          # a new catalog with every key, untranslated
    python -m portal.i18n_catalogs compile                  # print where the compiled catalogs are

`import-dict` reads dict literals from a Python file without running it (the dicts of the old
portal/i18n.py and portal/i18n_panel.py, or one a branch still adds to): every top-level
`NAME = {...}`, `NAME: dict[...] = {...}` and `NAME.update({...})` whose values are
{language: text}. New keys are appended; a key whose text differs is reported, and replaced only
with --replace. Merging a branch that still adds to the old dicts: keep this tree's portal/i18n.py
(and no i18n_panel.py), then for each of the branch's dict files

    git show BRANCH:portal/i18n_panel.py > /tmp/theirs.py
    git show $(git merge-base main BRANCH):portal/i18n_panel.py > /tmp/base.py
    python -m portal.i18n_catalogs import-dict /tmp/theirs.py --base /tmp/base.py

takes the keys the branch added and the texts only it changed, and lists the texts both sides
changed (decide, then `add KEY --en .. --vi ..`).
"""
from __future__ import annotations

import argparse
import ast
import functools
import gettext
import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"  # what a missing translation falls back to (after which: the key itself)


class CatalogError(Exception):
    """A catalog that cannot be read, or a dict file that cannot be imported."""


def languages() -> tuple[str, ...]:
    """The languages that have a catalog, sorted."""
    return tuple(sorted(p.parent.parent.name for p in TRANSLATIONS.glob(f"*/LC_MESSAGES/{DOMAIN}.po")))


def po_path(language: str) -> Path:
    return TRANSLATIONS / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(language: str) -> Catalog:
    path = po_path(language)
    try:
        with path.open("rb") as f:
            return read_po(f, locale=language, domain=DOMAIN, abort_invalid=True)
    except FileNotFoundError:
        raise CatalogError(f"no catalog for {language!r}: {path}") from None
    except Exception as exc:  # babel's PoFileError and friends: say which file
        raise CatalogError(f"{path}: {exc}") from exc


def write(catalog: Catalog, language: str) -> None:
    path = po_path(language)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=0, omit_header=False, include_previous=False, sort_output=False)
    tmp = path.with_suffix(".po.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def new_catalog(language: str) -> Catalog:
    return Catalog(locale=language, domain=DOMAIN, project="Footfall", version="1",
                   copyright_holder="Footfall contributors", charset="utf-8",
                   header_comment=f"# Footfall interface texts, {language}. Keys as msgids: see portal/i18n_catalogs.py.")


def texts(language: str) -> dict[str, str]:
    """key -> text of one catalog (untranslated and fuzzy entries left out)."""
    return {m.id: m.string for m in read(language) if m.id and m.string and not m.fuzzy}


# --- compiling ------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where compiled catalogs go: $FOOTFALL_CACHE_DIR, systemd's CacheDirectory, the user's cache."""
    for name in ("FOOTFALL_CACHE_DIR", "CACHE_DIRECTORY"):
        if os.environ.get(name):
            return Path(os.environ[name].split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(xdg) / "footfall"


def sources_hash() -> str:
    digest = hashlib.sha256()
    for language in languages():
        digest.update(language.encode() + b"\0" + po_path(language).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _compile_into(directory: Path) -> None:
    for language in languages():
        target = directory / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        write_mo(buffer, read(language), use_fuzzy=False)
        tmp = target.with_suffix(f".mo.{os.getpid()}")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(target)


@functools.lru_cache(maxsize=4)
def _compiled(digest: str) -> Path:
    candidates = [cache_root(), Path(tempfile.gettempdir()) / f"footfall-{os.getuid()}"]
    last: OSError | None = None
    for root in candidates:
        directory = root / f"translations-{digest}"
        try:
            if not all((directory / lang / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file() for lang in languages()):
                _compile_into(directory)
            return directory
        except OSError as exc:  # a read-only home under systemd's ProtectHome: try the next place
            last = exc
    raise CatalogError(f"cannot write compiled catalogs anywhere: {last}")


def compiled_dir() -> Path:
    """A directory of <lang>/LC_MESSAGES/messages.mo compiled from the current .po files."""
    return _compiled(sources_hash())


@functools.lru_cache(maxsize=16)
def _translations(language: str, digest: str) -> gettext.NullTranslations:
    directory = _compiled(digest)
    chain = [language] + ([SOURCE_LANGUAGE] if language != SOURCE_LANGUAGE else [])
    return gettext.translation(DOMAIN, localedir=directory, languages=chain, fallback=True)


def translations(language: str) -> gettext.NullTranslations:
    return _translations(language, _digest())


@functools.lru_cache(maxsize=4)
def _keys(digest: str) -> frozenset[str]:
    return frozenset(texts(SOURCE_LANGUAGE))


def known_keys() -> frozenset[str]:
    """Every key of the source catalog (read once per process)."""
    return _keys(_digest())


@functools.lru_cache(maxsize=1)
def _digest() -> str:
    """The sources' hash, computed once per process (catalogs are read at start, like templates)."""
    return sources_hash()


# --- adding messages ------------------------------------------------------------------------


def _dict_literals(tree: ast.Module):
    """Top-level dict literals of a module: assignments and NAME.update({...}) calls."""
    for node in tree.body:
        value = None
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "update" and call.args:
                value = call.args[0]
        if isinstance(value, ast.Dict):
            yield value


def read_dict_file(path: str | Path) -> dict[str, dict[str, str]]:
    """{key: {language: text}} from the dict literals of a Python file (never executed)."""
    source = Path(path).read_text(encoding="utf-8")
    found: dict[str, dict[str, str]] = {}
    for node in _dict_literals(ast.parse(source, filename=str(path))):
        try:
            value = ast.literal_eval(node)
        except ValueError:
            continue  # not a literal (a comprehension, a name): not a message table
        if all(isinstance(k, str) and isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
               for k, v in value.items()):
            found.update(value)
    if not found:
        raise CatalogError(f"{path}: no {{key: {{language: text}}}} dict literal found")
    return found


def merge(entries: dict[str, dict[str, str]], replace: bool = False,
          base: dict[str, dict[str, str]] | None = None) -> tuple[list[str], list[str]]:
    """Add `entries` to every catalog; returns (added or replaced lines, conflicts left alone).

    With `base` (the dicts as the branch found them), a three-way merge: a text the branch did not
    change is left alone, a text only the branch changed is taken, a text both changed is a conflict."""
    changed: list[str] = []
    conflicts: list[str] = []
    for language in languages():
        catalog = read(language)
        dirty = False
        for key, by_language in entries.items():
            text = by_language.get(language)
            if text is None:
                continue
            before = (base or {}).get(key, {}).get(language)
            if base is not None and before == text:
                continue  # the branch did not touch it: the catalog's text (maybe a newer one) stands
            existing = catalog.get(key)
            if existing is None or not existing.string:
                catalog.add(key, text)
                changed.append(f"{language}: + {key}")
                dirty = True
            elif existing.string != text:
                if replace or (before is not None and existing.string == before):
                    existing.string = text
                    changed.append(f"{language}: ~ {key}")
                    dirty = True
                else:
                    conflicts.append(f"{language}: {key}: catalog has {existing.string!r}, dict has {text!r}")
        if dirty:
            write(catalog, language)
    return changed, conflicts


def missing() -> list[str]:
    """Keys some catalog lacks or leaves untranslated (or fuzzy): '<lang>: <key>' lines."""
    catalogs = {language: read(language) for language in languages()}
    keys = {m.id for catalog in catalogs.values() for m in catalog if m.id}
    problems = []
    for language, catalog in catalogs.items():
        for key in sorted(keys):
            m = catalog.get(key)
            if m is None or not m.string or m.fuzzy:
                problems.append(f"{language}: {key}")
    return problems


def add_language(language: str) -> Path:
    """A new catalog holding every key of the source catalog, untranslated (`check` lists them)."""
    if po_path(language).exists():
        raise CatalogError(f"{language} already has a catalog")
    catalog = new_catalog(language)
    for m in read(SOURCE_LANGUAGE):
        if m.id:
            catalog.add(m.id, "", auto_comments=[f"{SOURCE_LANGUAGE}: {m.string}"])
    write(catalog, language)
    return po_path(language)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.i18n_catalogs", description=__doc__.split("\n")[0])
    parser.add_argument("--translations", metavar="DIR", help="the catalogs' directory (default: portal/translations)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="list keys some catalog lacks; exit 1 if any")
    add = sub.add_parser("add", help="add or change one key in every catalog")
    add.add_argument("key")
    for language in languages():
        add.add_argument(f"--{language}", required=True, metavar="TEXT")
    imp = sub.add_parser("import-dict", help="carry over {key: {language: text}} dicts from Python files")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--replace", action="store_true", help="replace texts that differ (default: report them)")
    imp.add_argument("--base", action="append", default=[], metavar="FILE",
                     help="the same dicts before the branch changed them (git show main:portal/i18n.py): a three-way merge")
    new = sub.add_parser("new-language", help="start a catalog for another language")
    new.add_argument("language")
    sub.add_parser("compile", help="compile to the cache directory and print it")
    args = parser.parse_args(argv)
    if args.translations:
        globals()["TRANSLATIONS"] = Path(args.translations).resolve()
    try:
        if args.command == "check":
            problems = missing()
            print("\n".join(problems) or f"all {len(texts(SOURCE_LANGUAGE))} keys translated in {', '.join(languages())}")
            return 1 if problems else 0
        if args.command == "add":
            changed, _ = merge({args.key: {lang: getattr(args, lang) for lang in languages()}}, replace=True)
            print("\n".join(changed) or "unchanged")
            return 0
        if args.command == "import-dict":
            entries: dict[str, dict[str, str]] = {}
            for path in args.files:
                entries.update(read_dict_file(path))
            base: dict[str, dict[str, str]] | None = None
            if args.base:
                base = {}
                for path in args.base:
                    base.update(read_dict_file(path))
            changed, conflicts = merge(entries, replace=args.replace, base=base)
            print("\n".join(changed) or "nothing new")
            if conflicts:
                print("differs (kept the catalog's; --replace to take the dict's):\n  " + "\n  ".join(conflicts),
                      file=sys.stderr)
            return 0
        if args.command == "new-language":
            print(add_language(args.language))
            return 0
        print(compiled_dir())
        return 0
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
