"""Memory sizes as users write them: '1.5GiB', '512MiB', '2GB', '4096'."""

from __future__ import annotations

import re

from autobatch.errors import ConfigError

_BYTES_RE = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>[KMGT]i?B?|B)?\s*$",
                       re.IGNORECASE)
_BYTE_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_bytes(text: str) -> int:
    """Parse a memory size: '1.5GiB', '512MiB', '2GB' (decimal), '4G' or '4096' (bytes).

    Binary units (KiB, MiB, GiB, TiB, or a bare K/M/G/T) are powers of 1024; the
    SI spellings KB/MB/GB/TB are powers of 1000.
    """
    match = _BYTES_RE.match(text)
    if not match:
        raise ConfigError(f"memory size must look like 1.5GiB, 512MiB or 2GB, got {text!r}")
    unit = (match["unit"] or "").upper()
    prefix = unit.rstrip("B").rstrip("I")
    base = 1000 if unit.endswith("B") and "I" not in unit and prefix else 1024
    value = float(match["num"]) * base ** _BYTE_POWERS[prefix]
    if value < 1:
        raise ConfigError(f"memory size must be at least 1 byte, got {text!r}")
    return int(value)


def bytes_in_words(text: str) -> str:
    """How parse_bytes reads `text`, to say so: '4GB = 4,000,000,000 bytes = 3.73 GiB
    (GB: powers of 1000; GiB: of 1024)'."""
    n = parse_bytes(text)
    unit = (_BYTES_RE.match(text)["unit"] or "").upper()  # type: ignore[index]
    decimal = unit.endswith("B") and "I" not in unit and len(unit) > 1
    return (f"{text.strip()} = {n:,} bytes = {n / 2**30:.2f} GiB ("
            + ("KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)" if decimal
               else "binary units: powers of 1024; KB, MB, GB, TB are powers of 1000)"))
