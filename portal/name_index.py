"""Names found by their words: a keyed blind index per normalized word of a person's name.

A name is stored encrypted, so the panel cannot search its text. Each word of it, case-folded
and without diacritics ("Nguyễn Thị Đào" > nguyen, thi, dao), is kept as an HMAC under the
store's index key, like the email and phone indexes: a typed "nguyen" or "Nguyễn" finds it, the
table alone reveals nothing. Whole words only (no prefixes: each would be one more guessable
hash per name). A SQLite trigger (migration 0020) drops a person's words whenever the name
changes or is erased, so no path that clears a name leaves its words behind; the writers that
set a name call `index()`, and the `name_index` job indexes the people still without words
(existing leads after the upgrade, or a name set by a path that does not index).
"""
from __future__ import annotations

import re
import unicodedata

from peewee import JOIN

from portal.db import database
from portal.identity import Vault
from portal.models import Lead, LeadNameWord

KIND = "name_word"
NONE = ""  # the row kept for a name without any word, so the job does not come back to it
MAX_WORDS = 8
_WORD = re.compile(r"[0-9a-z]+")
# Letters that are not a base letter plus a mark in Unicode: NFKD leaves them whole.
_FOLD = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ß": "ss", "æ": "ae", "œ": "oe"})


def fold(text: str) -> str:
    """Case-folded, without diacritics ("Đặng Thị Ánh" > "dang thi anh"); other scripts stay."""
    folded = unicodedata.normalize("NFKD", (text or "").casefold().translate(_FOLD))
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(_FOLD)


def ascii_words(text: str) -> list[str]:
    """The runs of ASCII letters and digits of the folded text, in order."""
    return _WORD.findall(fold(text))


def words(text: str) -> list[str]:
    """The name's words, case-folded, without diacritics, ASCII, in order, each once."""
    found: list[str] = []
    for word in ascii_words(text):
        if word not in found:
            found.append(word)
    return found[:MAX_WORDS]


def indexes(vault: Vault, text: str) -> list[str]:
    """The blind indexes to look up for a typed name (all must match)."""
    return [vault.blind_index(KIND, w) for w in words(text)]


def index(lead_id: int, name: str | None, vault: Vault) -> int:
    """Replace a person's name words (inside the caller's transaction); returns how many."""
    LeadNameWord.delete().where(LeadNameWord.lead == lead_id).execute()
    if not name:
        return 0
    rows = _rows(lead_id, name, vault)
    LeadNameWord.insert_many(rows).on_conflict_ignore().execute()
    return len(rows)


def _rows(lead_id: int, name: str, vault: Vault) -> list[dict]:
    return [{"lead": lead_id, "word": w} for w in indexes(vault, name)] or [{"lead": lead_id, "word": NONE}]


def backfill(vault: Vault, batch: int = 500, limit: int | None = None) -> dict:
    """Index the named people without words yet, `batch` per short transaction; idempotent."""
    done = last = 0
    while limit is None or done < limit:
        pending = list(Lead.select(Lead.id, Lead.name_enc)
                       .join(LeadNameWord, JOIN.LEFT_OUTER, on=(LeadNameWord.lead == Lead.id))
                       .where(Lead.id > last, Lead.name_enc.is_null(False), Lead.erased_at.is_null(),
                              LeadNameWord.lead.is_null())
                       .group_by(Lead.id).order_by(Lead.id).limit(batch))
        if not pending:
            break
        rows = [row for lead in pending for row in _rows(lead.id, vault.decrypt(lead.name_enc, "lead.name"), vault)]
        with database.atomic():  # computed first: the write lock is held for one insert only
            LeadNameWord.insert_many(rows).on_conflict_ignore().execute()
        done, last = done + len(pending), pending[-1].id
    return {"indexed": done}
