"""FieldError: a bad value of a named field, and the one integer check built on it."""

from __future__ import annotations

import numbers
from typing import Any


class FieldError(ValueError):
  """A field's value is invalid; `field`, `value` and `allowed` say which and why.

  The message reads without any CLI (`trials=0 is invalid; allowed: an integer >= 1`); a CLI
  that maps fields to its flags renders its own with `describe("--trials")`.

  Args:
    field: the name of the field (a config attribute or function argument).
    value: the value given.
    allowed: what would have been accepted, in words.
    detail: optional words between "is invalid" and "; allowed" (e.g. " for cost=flops").
    message: the whole message, when the standard one does not fit.
  """

  def __init__(self, field: str, value: Any, allowed: str, detail: str = "",
               message: str | None = None):
    self.field = field
    self.value = value
    self.allowed = allowed
    self.detail = detail
    super().__init__(message or self.describe())

  def describe(self, name: str | None = None) -> str:
    """The standard message, naming the field as `name` (e.g. a flag) instead of its own name."""
    return f"{name or self.field}={self.value!r} is invalid{self.detail}; allowed: {self.allowed}"


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
