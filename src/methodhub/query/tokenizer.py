"""The query language's tokens, and the one error every stage raises.

A query is tokenized in one pass before parsing (it is at most 8192 characters): names (keywords
are names, told apart by the parser), decoded strings, numbers, symbols and an END token at the
text's length. Strings take single or double quotes with the escapes ``\\' \\" \\\\ \\/ \\b
\\f \\n \\r \\t \\uXXXX`` (a surrogate pair is one character; a lone surrogate and NUL are
refused); numbers are ``[-]digits[.digits]`` (an int without a point, a float with one) or
``0x`` hex, and must fit in 64 bits.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from methodhub.query.ast import LiteralValue

RESERVED = frozenset(
    {"SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "TOP"}
    | {"AND", "OR", "NOT", "IN", "NIN"}
    | {"TRUE", "FALSE", "NULL"}
)
"""Words that cannot start a path or be an alias (after a dot any name is a segment: ``tags.from``)."""

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_DIGITS = "0123456789"
"""Only ASCII digits are digits (``str.isdigit`` also takes ``²`` and ``٣``)."""
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class QuerySyntaxError(ValueError):
    """A query that is not in the supported language (or breaks one of its rules).

    Attributes:
        position: 0-based index into the query text where the problem is (its length: at the end).
        expected: what would have been valid there, in words ("a value", "FROM").
        message: the whole sentence, ``at position N: expected ... but found ...``; also ``str(error)``.
    """

    def __init__(self, position: int, expected: str, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.expected = expected
        self.message = message


class Kind(enum.Enum):
    NAME = "name"
    STRING = "string"
    NUMBER = "number"
    SYMBOL = "symbol"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    """The source text (for END: empty)."""
    start: int
    value: LiteralValue = None
    """A STRING's decoded text or a NUMBER's value."""

    def is_word(self, word: str) -> bool:
        return self.kind is Kind.NAME and self.text.upper() == word

    def is_symbol(self, symbol: str) -> bool:
        return self.kind is Kind.SYMBOL and self.text == symbol

    @property
    def reserved(self) -> bool:
        return self.kind is Kind.NAME and self.text.upper() in RESERVED


def shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def describe(token: Token) -> str:
    if token.kind is Kind.END:
        return "end of query"
    if token.kind is Kind.STRING:
        return f"the string {shorten(token.text)}"
    if token.kind is Kind.NUMBER:
        return f"the number {shorten(token.text)}"
    return f"'{shorten(token.text)}'"


def syntax_error(
    position: int, expected: str, found: str, after: str | None = None, hint: str = ""
) -> QuerySyntaxError:
    where = f" after {after}" if after else ""
    message = f"at position {position}: expected {expected}{where} but found {found}"
    return QuerySyntaxError(position, expected, message + (f"; {hint}" if hint else ""))


def rule_error(position: int, expected: str, sentence: str) -> QuerySyntaxError:
    """A rule of the language (not of its grammar) broken at ``position``."""
    return QuerySyntaxError(position, expected, f"at position {position}: {sentence}")


# --- tokenizer -------------------------------------------------------------------------------------


def _name_start(char: str) -> bool:
    return char.isalpha() or char == "_"


def _name_char(char: str) -> bool:
    return char.isalpha() or char in _DIGITS or char in "_-"


class _Tokenizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        text, i = self.text, 0
        while i < self.n:
            char = text[i]
            if char.isspace():
                i += 1
            elif char in "'\"":
                i = self._string(i)
            elif char in _DIGITS or (char == "-" and i + 1 < self.n and text[i + 1] in _DIGITS):
                i = self._number(i)
            elif _name_start(char) or char == "$":
                i = self._name(i)
            elif char in "(),.[]*=":
                self.tokens.append(Token(Kind.SYMBOL, char, i))
                i += 1
            elif char in "!<>":
                i = self._operator(i)
            else:
                found = f"'{char}'" if char.isprintable() else f"the character U+{ord(char):04X}"
                raise syntax_error(i, "a name, a constant, an operator or a parenthesis", found)
        self.tokens.append(Token(Kind.END, "", self.n))
        return self.tokens

    def _operator(self, i: int) -> int:
        text = self.text
        two = text[i : i + 2]
        if two in ("!=", "<>", "<=", ">="):
            self.tokens.append(Token(Kind.SYMBOL, two, i))
            return i + 2
        if text[i] == "!":
            found = f"'{text[i + 1]}'" if i + 1 < self.n else "end of query"
            raise syntax_error(i + 1, "'='", found, after="'!'", hint="write != or <> for 'not equal'")
        self.tokens.append(Token(Kind.SYMBOL, text[i], i))
        return i + 1

    def _name(self, i: int) -> int:
        text, start = self.text, i
        if text[i] == "$":
            i += 1
            if i >= self.n or not _name_start(text[i]):
                found = f"'{text[i]}'" if i < self.n else "end of query"
                raise syntax_error(i, "a name (a letter or _ first)", found, after="'$'")
        i += 1
        while i < self.n and _name_char(text[i]):
            i += 1
        self.tokens.append(Token(Kind.NAME, text[start:i], start))
        return i

    def _number(self, i: int) -> int:
        text, start = self.text, i
        if text[i] == "-":
            i += 1
        value: int | float
        if text[i] == "0" and text[i + 1 : i + 2] in ("x", "X") and start == i:
            i += 2
            digits_start = i
            while i < self.n and text[i] in "0123456789abcdefABCDEF":
                i += 1
            if i == digits_start:
                found = f"'{text[i]}'" if i < self.n else "end of query"
                raise syntax_error(i, "a hexadecimal digit", found, after=f"'{text[start:i]}'")
            value = int(text[digits_start:i], 16)
        else:
            while i < self.n and text[i] in _DIGITS:
                i += 1
            if i < self.n and text[i] == ".":
                i += 1
                if i >= self.n or text[i] not in _DIGITS:
                    found = f"'{text[i]}'" if i < self.n else "end of query"
                    raise syntax_error(
                        i, "a digit after the decimal point", found, after=f"'{text[start:i]}'"
                    )
                while i < self.n and text[i] in _DIGITS:
                    i += 1
                value = float(text[start:i])
                if not math.isfinite(value):
                    raise rule_error(
                        start, "a smaller number", f"the number {shorten(text[start:i])} is too large"
                    )
            else:
                value = int(text[start:i])
        if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
            raise rule_error(
                start,
                "a whole number that fits in 64 bits",
                f"the number {shorten(text[start:i])} is out of range ({_INT_MIN} to {_INT_MAX})",
            )
        if i < self.n and (_name_char(text[i]) or text[i] == "$"):
            raise syntax_error(
                i, "a space, an operator, ',' or ')'", f"'{text[i]}'", after=f"the number {text[start:i]}"
            )
        self.tokens.append(Token(Kind.NUMBER, text[start:i], start, value))
        return i

    def _string(self, start: int) -> int:
        text, quote = self.text, self.text[start]
        chars: list[str] = []
        i = start + 1
        while True:
            if i >= self.n:
                raise syntax_error(
                    self.n, f"{quote} to end the string that starts at position {start}", "end of query"
                )
            char = text[i]
            if char == quote:
                break
            if char == "\\":
                i = self._escape(i, chars)
                continue
            if char == "\0":
                raise rule_error(i, "no NUL character", "a string may not contain the NUL character")
            chars.append(char)
            i += 1
        if i + 1 < self.n and text[i + 1] == quote:
            raise syntax_error(
                i + 1,
                "the end of the string",
                f"another {quote}",
                hint=f"to put {quote} inside a string write \\{quote}",
            )
        self.tokens.append(Token(Kind.STRING, text[start : i + 1], start, "".join(chars)))
        return i + 1

    def _escape(self, i: int, chars: list[str]) -> int:
        """Decode the escape at ``text[i] == '\\'``; the index after it."""
        text = self.text
        if i + 1 >= self.n:
            raise syntax_error(self.n, "an escape character after \\", "end of query")
        code = text[i + 1]
        if code in _ESCAPES:
            chars.append(_ESCAPES[code])
            return i + 2
        if code != "u":
            raise syntax_error(
                i,
                "one of \\' \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                f"'\\{code}'",
                hint="write \\\\ for a backslash",
            )
        unit = self._hex4(i)
        if 0xDC00 <= unit <= 0xDFFF:
            raise syntax_error(i, "a \\u escape that is not a lone low surrogate", f"'\\u{unit:04X}'")
        if 0xD800 <= unit <= 0xDBFF:
            if text[i + 6 : i + 8] != "\\u":
                raise syntax_error(
                    i + 6, "\\u followed by a low surrogate (DC00-DFFF)", f"nothing after '\\u{unit:04X}'"
                )
            low = self._hex4(i + 6)
            if not 0xDC00 <= low <= 0xDFFF:
                raise syntax_error(i + 6, "a low surrogate (\\uDC00-\\uDFFF)", f"'\\u{low:04X}'")
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
            return i + 12
        if unit == 0:
            raise rule_error(i, "no NUL character", "a string may not contain the NUL character")
        chars.append(chr(unit))
        return i + 6

    def _hex4(self, i: int) -> int:
        digits = self.text[i + 2 : i + 6]
        if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise syntax_error(i, "\\u and four hexadecimal digits", f"'{shorten(self.text[i : i + 6])}'")
        return int(digits, 16)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an END token at ``len(text)``.

    Raises:
        QuerySyntaxError: a character, string or number that is not in the language.
    """
    return _Tokenizer(text).run()
