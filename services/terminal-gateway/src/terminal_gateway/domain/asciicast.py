"""Session recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
a JSON header line, then one JSON array per event, `[seconds since start, code, data]`
with code `o` (output), `i` (input) or `r` (resize, data `"COLSxROWS"`). Terminal bytes are
decoded as UTF-8 incrementally per direction (a character split across reads stays whole;
invalid bytes become U+FFFD), so each line is valid JSON. Pure: the I/O is elsewhere."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def header(
    width: int, height: int, timestamp: int, title: str, term: str = "xterm-256color"
) -> bytes:
    line = {
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": timestamp,
        "title": title,
        "env": {"TERM": term},
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


class Encoder:
    """Turns one session's traffic into asciicast event lines. `dumps` encodes one JSON
    value (the standard library's by default; the relay passes a faster one)."""

    def __init__(self, dumps: Callable[[Any], bytes] = _dumps) -> None:
        self._dumps = dumps
        self._decoders = {
            code: codecs.getincrementaldecoder("utf-8")(errors="replace") for code in "oi"
        }

    def _line(self, seconds: float, code: str, data: str) -> bytes:
        return self._dumps([round(max(seconds, 0.0), 6), code, data]) + b"\n"

    def output(self, seconds: float, data: bytes) -> bytes:
        text = self._decoders["o"].decode(data)
        return self._line(seconds, "o", text) if text else b""

    def input(self, seconds: float, data: bytes) -> bytes:
        text = self._decoders["i"].decode(data)
        return self._line(seconds, "i", text) if text else b""

    def resize(self, seconds: float, cols: int, rows: int) -> bytes:
        return self._line(seconds, "r", f"{cols}x{rows}")
