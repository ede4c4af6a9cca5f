"""A slow SMTP server for the container tests, run inside a test host's network namespace:

    python smtp_sink.py ADDRESS PORT LOG

Each message takes 0.3-3 s to accept (by its subject's number), so that jobs sending
mail are still running when a test kills or stops the container that runs them. A message
is written to LOG (its Message-ID, one line) only if its sender is still connected when
the 250 is due: a sender killed mid-message has delivered nothing.
"""

import asyncio
import re
import sys
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class SlowSink:
    def __init__(self, log: Path) -> None:
        self.log = log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        digits = re.findall(r"\d+", message["Subject"] or "")
        number = int(digits[-1]) if digits else 0
        await asyncio.sleep(0.3 + (number % 10) * 0.3)
        if server.transport is None or server.transport.is_closing():
            return "451 the sender went away"
        with self.log.open("a") as log:
            log.write(f"{message['Message-ID']}\n")
        return "250 OK"


def main() -> None:
    address, port, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    controller = Controller(SlowSink(log), hostname=address, port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    controller.stop()


if __name__ == "__main__":
    main()
