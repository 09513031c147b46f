"""Password hashing with Argon2id (argon2-cffi's defaults follow RFC 9106's recommendations)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


MIN_PASSWORD_LENGTH = 10
# Common passwords that pass the length rule (lists of leaked passwords, Chinese ones included).
_COMMON = frozenset(
    [
        "1234567890", "0123456789", "12345678910", "1234567890a", "123456789a", "a123456789", "1qaz2wsx3edc",
        "1q2w3e4r5t", "qwertyuiop", "qwerty1234", "qwerty12345", "asdfghjkl1", "password12", "password123",
        "password1234", "passw0rd123", "iloveyou12", "abc1234567", "abcd123456", "abcdefghij", "admin12345",
        "admin123456", "administrator", "woaini1314", "woaini520", "5201314520", "1314520520", "caonima123",
        "zxcvbnm123", "aa12345678", "a1234567890", "qq123456789", "changeme123", "welcome123", "letmein123",
        "trustno1234", "casework123",
    ]
)


def password_problem(password: str, username: str) -> str | None:
    """Why a password is refused, or None. Length, not composition rules (NIST SP 800-63B): long,
    not the user's own name, not a common one, not one character repeated."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    folded = password.casefold()
    if username and username.casefold() in folded:
        return "must not contain the user name"
    if folded in _COMMON or len(set(folded)) < 4:
        return "is too common or too simple"
    return None
