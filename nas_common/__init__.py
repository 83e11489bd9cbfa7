"""The few helpers every package may import: field errors, the integer check, the atomic writer.

It imports nothing from the project, so that search_space, rewards and controller (which must not
import mnas_search) can use it too; see docs/ARCHITECTURE.md.
"""

from nas_common.atomic import atomic_write_json, atomic_write_text, fsync_dir
from nas_common.errors import FieldError, FieldNotFoundError, check_int

__all__ = ["FieldError", "FieldNotFoundError", "atomic_write_json", "atomic_write_text", "check_int",
           "fsync_dir"]
