"""What the hub answered on an AMQP fuzz connection, read with ``methodhub.amqp``'s decoder.

The fuzzer builds what it sends on its own (:mod:`fuzz.amqpgen`); the hub's answers are read here
with the hub's codec, which is fine for judging them: a codec bug that garbles the hub's output
shows as :attr:`AmqpAnswers.garbled`. What is kept: the protocol headers, the SASL outcome, the
``close`` (and its error condition), the errors of ``detach`` and ``end`` frames, the status of each
put-token answer. :meth:`AmqpAnswers.ending` classifies how the hub ended the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from methodhub.amqp import (
    Attach,
    Close,
    DecodeError,
    Detach,
    End,
    Open,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
    decode_frame,
    decode_message,
)

READ_LIMIT = 256 * 1024
"""Bytes of the hub's answer read per connection (a fuzz device is never sent calls)."""
STATUS_OK = 200


@dataclass(slots=True)
class AmqpAnswers:
    """The hub's side of one AMQP connection, fed as it arrives."""

    sasl_plain: bool = False
    """The fuzzer's SASL layer is PLAIN: an ``ok`` outcome then means the hub authorized it."""
    headers: list[bytes] = field(default_factory=list)
    mechanisms: tuple[str, ...] = ()
    sasl_code: int | None = None
    opened: bool = False
    closed: bool = False
    close_condition: str | None = None
    detach_errors: list[str] = field(default_factory=list)
    end_errors: list[str] = field(default_factory=list)
    put_token_statuses: list[int] = field(default_factory=list)
    attaches: int = 0
    frames: int = 0
    garbled: str = ""
    _buffer: bytearray = field(default_factory=bytearray)
    _read: int = 0
    _expect_header: bool = True

    @property
    def authorized(self) -> bool:
        """The hub accepted a put-token (or a SASL PLAIN) on this connection."""
        return STATUS_OK in self.put_token_statuses or (self.sasl_plain and self.sasl_code == 0)

    def feed(self, data: bytes) -> None:
        if self.garbled or self._read >= READ_LIMIT:
            return
        data = data[: READ_LIMIT - self._read]
        self._read += len(data)
        self._buffer += data
        buf = self._buffer
        pos = 0
        try:
            while pos < len(buf):
                if self._expect_header:
                    if len(buf) - pos < 8:
                        break
                    header = bytes(buf[pos : pos + 8])
                    pos += 8
                    self.headers.append(header)
                    self._expect_header = False
                    continue
                frame, after = decode_frame(buf, pos)
                if frame is None:
                    break
                pos = after
                self.frames += 1
                self._frame(frame.body, frame.payload)
        except DecodeError as exc:
            self.garbled = f"the hub's answer does not decode: {exc.reason}"[:200]
        del buf[:pos]

    def _frame(self, body: object, payload: bytes) -> None:
        kind = type(body)
        if kind is SaslMechanisms:
            self.mechanisms = tuple(str(m) for m in body.sasl_server_mechanisms)  # type: ignore[attr-defined]
        elif kind is SaslOutcome:
            self.sasl_code = int(body.code)  # type: ignore[attr-defined]
            self._expect_header = self.sasl_code == 0  # after ok, the AMQP header comes
        elif kind is Close:
            self.closed = True
            error = body.error  # type: ignore[attr-defined]
            self.close_condition = str(error.condition) if error is not None else None
        elif kind is Detach and body.error is not None:  # type: ignore[attr-defined]
            self.detach_errors.append(str(body.error.condition))  # type: ignore[attr-defined]
        elif kind is End and body.error is not None:  # type: ignore[attr-defined]
            self.end_errors.append(str(body.error.condition))  # type: ignore[attr-defined]
        elif kind is Transfer and payload and not body.more:  # type: ignore[attr-defined]
            try:
                message = decode_message(payload)
            except DecodeError:
                return
            status = (message.application_properties or {}).get("status-code")
            if isinstance(status, int) and not isinstance(status, bool):
                self.put_token_statuses.append(int(status))
        elif kind is Open:
            self.opened = True
        elif kind is Attach:
            self.attaches += 1

    def ending(self, closed_by_hub: bool) -> str:
        """How the connection ended, as a short class (``close amqp:decode-error``, ``TCP close``,
        ``SASL outcome 1``, ``protocol header``...)."""
        if self.garbled:
            return "garbled answer"
        if self.closed:
            return f"close {self.close_condition or '(no error)'}"
        if self.sasl_code not in (None, 0):
            return f"SASL outcome {self.sasl_code}"
        if not closed_by_hub:
            return "closed by the fuzzer"
        if self.headers and not self.opened and self.sasl_code is None and not self.mechanisms:
            return "protocol header, then TCP close"
        return "TCP close"
