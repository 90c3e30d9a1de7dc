"""The bot-protection layer in front of the Met (Imperva/Incapsula), as measured from outside.

A sliding-window request budget per (client address, host). A client that goes over it is
blocked for a penalty time; while blocked, every request gets the block page. Nothing here
knows about HTTP: the server asks :meth:`Throttle.admit` and renders the answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

#: The real service's block page: HTML, about 760 bytes, no Retry-After.
BLOCK_PAGE_TEMPLATE = """<html style="height:100%"><head>\
<META NAME="ROBOTS" CONTENT="NOINDEX, NOFOLLOW">\
<meta name="format-detection" content="telephone=no"><meta name="viewport" \
content="initial-scale=1.0"><meta http-equiv="X-UA-Compatible" content="IE=edge,chrome=1"></head>\
<body style="margin:0px;height:100%"><iframe id="main-iframe" \
src="/_Incapsula_Resource?CWUDNSAI=24&xinfo=9-{incident}-0%200NNN%20RT%28{stamp}%20{n}%29\
%20q%280%20-1%20-1%20-1%29%20r%280%20-1%29%20B12%284%2c315%2c0%29%20U18&incident_id={incident}\
&edet=12&cinfo=04000000&rpinfo=0&mth=GET" frameborder=0 width="100%" height="100%" \
marginheight="0px" marginwidth="0px">Request unsuccessful. Incapsula incident ID: \
{incident}</iframe></body></html>"""


def block_page(incident: int, stamp: int) -> bytes:
    """Render the block page for one incident number."""
    text = BLOCK_PAGE_TEMPLATE.format(incident=f"{incident:019d}", stamp=stamp, n=incident % 997)
    return text.encode()


@dataclass(frozen=True)
class ThrottleConfig:
    """The budget: at most ``burst`` requests per ``window`` seconds, else blocked ``penalty`` s.

    The defaults sit inside what was measured against the real service: bursts of 30-110
    requests within tens of seconds get blocked; about 1 request/s sustained is safe.
    """

    window: float = 30.0
    burst: int = 40
    penalty: float = 60.0


class Throttle:
    """Sliding-window budgets per (client, host), safe to call from many threads."""

    def __init__(self, config: ThrottleConfig, clock=time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}

    def admit(self, client: str, host: str) -> bool:
        """Count one request; return False if the client is (now) blocked on that host."""
        key = (client, host)
        now = self._clock()
        with self._lock:
            if self._blocked_until.get(key, 0.0) > now:
                return False
            recent = self._recent.setdefault(key, deque())
            while recent and recent[0] <= now - self.config.window:
                recent.popleft()
            recent.append(now)
            if len(recent) > self.config.burst:
                self._blocked_until[key] = now + self.config.penalty
                recent.clear()
                return False
            return True
