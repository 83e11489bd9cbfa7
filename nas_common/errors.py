"""FieldError: a bad value of a named field, and the one integer check built on it."""

from __future__ import annotations

import numbers
from typing import Any


class FieldError(ValueError):
  """A field's value is invalid; `field`, `value` and `allowed` say which and why.

  The message reads without any CLI (`trials=0 is invalid; allowed: an integer >= 1`); a CLI
  that maps fields to its flags renders its own with `describe("--trials")`, so the words after
  the name are kept in slots (`reason`, `detail`, `allowed`) rather than in one string.

  Args:
    field: the name of the field (a config attribute or function argument).
    value: the value given.
    allowed: what would have been accepted, in words; empty for no "; allowed" part.
    detail: optional words between the reason and "; allowed" (e.g. " for cost=flops").
    message: the whole message, when the standard one does not fit (`describe` still renders
      the standard one).
    reason: what is wrong with the value, "is invalid" by default (e.g. "has no trials.jsonl",
      or ": option 'x' is not understood").
    where: the file and record the value was read from, for a field of a stored record rather
      than a setting; the message starts with it, and a CLI must not map the field to a flag.
  """

  def __init__(self, field: str, value: Any, allowed: str, detail: str = "",
               message: str | None = None, *, reason: str = "is invalid", where: str | None = None):
    self.field = field
    self.value = value
    self.allowed = allowed
    self.detail = detail
    self.reason = reason
    self.where = where
    super().__init__(message or (f"{where}: " if where else "") + self.describe())

  def describe(self, name: str | None = None) -> str:
    """The standard message, naming the field as `name` (e.g. a flag) instead of its own name."""
    # A reason that starts with punctuation (": folder 'x' does not exist") attaches to the value.
    space = "" if self.reason[:1] in ":;," else " "
    text = f"{name or self.field}={self.value!r}{space}{self.reason}{self.detail}"
    return f"{text}; allowed: {self.allowed}" if self.allowed else text


class FieldNotFoundError(FieldError, FileNotFoundError):
  """A field names a file or folder that does not exist or lacks what is needed; a
  FileNotFoundError too, for callers that catch that."""


def check_int(field: str, value: Any, minimum: int | None = None, allow_none: bool = False,
              error: type[FieldError] = FieldError) -> int | None:
  """`value` as an int (bools refused; numpy integers accepted), or `error` naming `field`.

  Args:
    field: the name in the message.
    value: the value to check.
    minimum: the smallest allowed value; None for any integer.
    allow_none: None is allowed (and returned).
    error: the FieldError subclass to raise.
  """
  if value is None and allow_none:
    return None
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
      minimum is not None and value < minimum):
    allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    raise error(field, value, ("None or " if allow_none else "") + allowed)
  return int(value)
