"""The one stored form of an email address, so that two spellings a person reads as the same
address are one account, whichever way it is typed.

The local part: Unicode NFKC (fullwidth and compatibility forms become their plain letters)
and case folding, with the dotted capital I (`İ`, which folds to `i` and a combining dot) read
as `i`. The domain: IDNA processing (UTS #46: mapped, normalised and checked, so the fullwidth
spelling of `EXAMPLE.com` and `Example.COM` are `example.com`), without a trailing dot, kept in
its Unicode form.
Invisible and control characters (a zero-width space, say) are refused rather than dropped: an
address that holds one is not the address its owner reads.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna

# Control, format (zero-width and direction marks), private-use, surrogate and unassigned.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
_DOTTED_I = "i\u0307"  # what `İ` folds to


class EmailError(ValueError):
    """The text is not an email address this data layer can store; the message says why."""


def normalize_email(email: str) -> str:
    """The stored form of `email` (see the module's docstring), or `EmailError`."""
    if email.isascii():
        text = email.strip()  # NFKC changes no ASCII text
        if text.isprintable() and " " not in text:
            return _normalized(text)
    else:
        text = unicodedata.normalize("NFKC", email).strip()
    _check_characters(text)
    return _normalized(text)


def _check_characters(text: str) -> None:
    if "\x00" in text:
        raise EmailError("an email address cannot hold NUL characters")
    if not text.isprintable() or any(unicodedata.category(ch) in _INVISIBLE for ch in text):
        raise EmailError("an email address cannot hold invisible or control characters")
    if any(ch.isspace() for ch in text):
        raise EmailError("an email address cannot hold spaces")


def _normalized(text: str) -> str:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise EmailError("an email address is a local part, '@' and a domain")
    if local.isascii():
        local = local.lower()  # ASCII: what case folding and NFKC give, at a fraction of the cost
    else:
        local = unicodedata.normalize("NFKC", local.casefold()).replace(_DOTTED_I, "i")
    return f"{local}@{_domain(domain)}"


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """A domain in its one form: UTS #46 mapping and checks, no trailing dot."""
    stripped = domain[:-1] if domain.endswith(".") else domain
    try:
        return str(idna.decode(idna.encode(stripped, uts46=True)))
    except (idna.IDNAError, UnicodeError):
        pass  # raised below, so that the error does not carry this one (it quotes the domain)
    raise EmailError("the domain of an email address is not a valid domain name")
