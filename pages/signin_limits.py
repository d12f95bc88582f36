"""Sign-in limits, counted in Redis before any password is checked.

Three counters, all taken in one Lua script (so 50 parallel guesses get exactly as many
checks as the limits allow, whichever process answers them):

- per account and address: `PAIR_LIMIT` attempts per window;
- per account, from addresses that never signed in to it: `ACCOUNT_LIMIT` per window, so
  a spread-out guesser is held too. The wait is at most the window and does not grow: an
  attacker can make a user's sign-in from a *new* address wait, but never from an address
  the user signed in from before (remembered `KNOWN_DAYS`), and never for long;
- per address, over every account: `ADDRESS_LIMIT` per window; past it the address is
  locked out, for `LOCKOUT` doubling with each lockout within a day (up to `MAX_LOCKOUT`).
  The lockout grows per address, where the attacker is, not per account.

A successful sign-in gives its own attempt back to every counter (the user is not charged
for signing in) and remembers the address for the account. Emails and addresses are
hashed into the keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

WINDOW = 15 * 60
PAIR_LIMIT = 5
ACCOUNT_LIMIT = 10
ADDRESS_LIMIT = 30
LOCKOUT = 15 * 60
MAX_LOCKOUT = 24 * 3600
KNOWN_DAYS = 30

# KEYS: pair, account, address, address lock, address lockouts, known (account, address)
# ARGV: window, pair limit, account limit, address limit, lockout, max lockout
# Returns {0, 0} when the attempt may go on, else {seconds to wait, which limit}.
_TAKE = """
local lock = redis.call('TTL', KEYS[4])
if lock > 0 then return {lock, 3} end
local window = tonumber(ARGV[1])
local function take(key, limit)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, window) end
  if n > limit then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = window end
    return ttl
  end
  return 0
end
local address = take(KEYS[3], tonumber(ARGV[4]))
if address > 0 then
  local level = redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], 86400)
  local wait = math.floor(math.min(tonumber(ARGV[5]) * 2 ^ (level - 1), tonumber(ARGV[6])))
  redis.call('SET', KEYS[4], '1', 'EX', wait)
  return {wait, 3}
end
local pair = take(KEYS[1], tonumber(ARGV[2]))
if pair > 0 then return {pair, 1} end
if redis.call('EXISTS', KEYS[6]) == 0 then
  local account = take(KEYS[2], tonumber(ARGV[3]))
  if account > 0 then return {account, 2} end
end
return {0, 0}
"""

# KEYS: pair, account, address, known. ARGV: seconds to remember the address.
_GIVE_BACK = """
for i = 1, 3 do
  if (tonumber(redis.call('GET', KEYS[i]) or '0')) > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[1]))
return 0
"""


@dataclass(frozen=True)
class Refused:
    """Why an attempt may not go on, and for how long."""

    retry_after: int
    limit: str  # "account and address", "account", "address"


_NAMES = {1: "account and address", 2: "account", 3: "address"}


class SignInLimits:
    """The three counters of one Redis (every `beacon serve` shares them)."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}beacon:signin:"
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)

    def _key(self, kind: str, *parts: str) -> str:
        digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
        return f"{self.prefix}{kind}:{digest}"

    def _keys(self, email: str, address: str) -> dict[str, str]:
        return {
            "pair": self._key("pair", email, address),
            "account": self._key("account", email),
            "address": self._key("address", address),
            "lock": self._key("lock", address),
            "lockouts": self._key("lockouts", address),
            "known": self._key("known", email, address),
        }

    def take(self, email: str, address: str) -> Refused | None:
        """Count one attempt; None when it may go on to the password check."""
        k = self._keys(email, address)
        wait, which = self._take(
            keys=[k["pair"], k["account"], k["address"], k["lock"], k["lockouts"], k["known"]],
            args=[WINDOW, PAIR_LIMIT, ACCOUNT_LIMIT, ADDRESS_LIMIT, LOCKOUT, MAX_LOCKOUT],
        )
        return Refused(int(wait), _NAMES[int(which)]) if int(wait) > 0 else None

    def succeeded(self, email: str, address: str) -> None:
        """A right password: give the attempt back and remember the address."""
        k = self._keys(email, address)
        self._give_back(
            keys=[k["pair"], k["account"], k["address"], k["known"]],
            args=[KNOWN_DAYS * 86400],
        )
