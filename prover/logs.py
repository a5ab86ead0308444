"""
Structured logs: one line per event, ``key=value`` pairs or a JSON object, on stderr.

    event(log, logging.INFO, "proof_confirmed", period=12, tx="0x..", margin_blocks=15)
    -> 2025-01-01T12:00:00.123Z INFO prover.proofs event=proof_confirmed period=12 tx=0x..
       margin_blocks=15                                                    (one line)

Records from other libraries (``node.*``, uvicorn) carry no fields; their message becomes
``msg="..."``. Every event names what it concerns: ``period``, ``deal``, ``peer``, ``root``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

FIELDS_ATTR: Final = "depot_fields"
EVENT_ATTR: Final = "depot_event"


def event(log: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log event ``name`` with its fields (bytes become hex, floats are rounded)."""
    if log.isEnabledFor(level):
        plain = {k: _plain(v) for k, v in fields.items()}
        # The message itself reads well under any formatter (pytest's, say); ours use the
        # structured attributes.
        text = " ".join([name, *(f"{k}={_quote(str(v))}" for k, v in plain.items())])
        log.log(level, "%s", text, extra={FIELDS_ATTR: plain, EVENT_ATTR: name})


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return round(value, 4)
    return value


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


class KeyValueFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> event=<name> k=v ...`` (values with spaces are quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, FIELDS_ATTR, None)
        parts = [_timestamp(record), record.levelname, record.name]
        if fields is None:
            parts.append(f"msg={_quote(record.getMessage())}")
        else:
            parts.append(f"event={getattr(record, EVENT_ATTR)}")
            parts += [f"{k}={_quote(str(v))}" for k, v in fields.items()]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event`` or ``msg``, fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, FIELDS_ATTR, None)
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if fields is None:
            doc["msg"] = record.getMessage()
        else:
            doc["event"] = getattr(record, EVENT_ATTR)
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _quote(text: str) -> str:
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text)


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    """Send every logger's records to stderr in ``fmt`` (``kv`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # web3 and urllib3 log every retry at DEBUG/INFO; the daemon reports outages itself.
    for noisy in ("web3", "urllib3", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
