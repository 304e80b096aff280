"""The Lua scripts: each read-modify-write is one atomic script run by the server.

Times come from the server's ``TIME`` (never a process's clock), so processes whose clocks
disagree still share one schedule. Numbers cross the Lua boundary as strings: Redis turns a Lua
number reply into an integer, which would cut fractions of a second.
"""

from __future__ import annotations

__all__ = ["BUDGET", "CAS", "COUNT", "PAUSE", "RATE", "TIME_NOW"]

# A Lua helper shared by the scripts: the server's clock in seconds (microsecond resolution).
TIME_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# Compare-and-set: KEYS[1]; ARGV[1] the value expected ('' = none), ARGV[2] the new value,
# ARGV[3] the idle expiry in ms. {1}: written; {0, current}: someone else wrote first ({0}: the
# key is gone).
CAS = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1}
end
if current == false then
  return {0}
end
return {0, current}
"""

# GCRA with reservation. KEYS[1] the theoretical arrival time, KEYS[2] the pause's end;
# ARGV[1] seconds per request (0: unlimited), ARGV[2] the burst tolerance (s), ARGV[3] the
# longest wait that may be reserved (s; '-1': any). {1, wait}: reserved, send in `wait` s;
# {0, wait}: refused, the slot was `wait` s away.
RATE = (
    TIME_NOW
    + """
local start = now
local paused = redis.call('GET', KEYS[2])
if paused then
  start = math.max(start, tonumber(paused))
end
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local at = start
local tat = 0
if interval > 0 then
  tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  at = math.max(start, tat - tonumber(ARGV[2]))
end
local wait = at - now
if limit >= 0 and wait > limit then
  return {0, string.format('%.6f', wait)}
end
if interval > 0 then
  local next_tat = math.max(tat, at) + interval
  local ttl = math.ceil((next_tat - now) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX', ttl)
end
return {1, string.format('%.6f', wait)}
"""
)

# A shared pause (Retry-After): KEYS[1] the pause's end; ARGV[1] seconds from now. Only moves
# later, never earlier.
PAUSE = (
    TIME_NOW
    + """
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  local ttl = math.ceil(tonumber(ARGV[1]) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', ttl)
end
return 1
"""
)

# Retry budget. KEYS[1] a hash of per-slice counts: 'r<tick>' requests, 't<tick>' retries.
# ARGV: deposits, withdraw ('1'/'0'), ratio, reserve, slice width (s), slices, retries spent
# without the store (counted as they are). Returns {1 when a
# retry was spent else 0, the requests in the window}. Slices older than the window are deleted
# as they are met.
BUDGET = (
    TIME_NOW
    + """
local width = tonumber(ARGV[5])
local slices = tonumber(ARGV[6])
local tick = math.floor(now / width)
local oldest = tick - slices + 1
local fields = redis.call('HGETALL', KEYS[1])
local requests, retries = 0, 0
for i = 1, #fields, 2 do
  local field = fields[i]
  local count = tonumber(fields[i + 1])
  if tonumber(string.sub(field, 2)) < oldest then
    redis.call('HDEL', KEYS[1], field)
  elseif string.sub(field, 1, 1) == 'r' then
    requests = requests + count
  else
    retries = retries + count
  end
end
local deposits = tonumber(ARGV[1])
local slot = string.format('%d', tick)
if deposits ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'r' .. slot, deposits)
  requests = requests + deposits
end
local forced = tonumber(ARGV[7] or '0')
if forced ~= 0 then
  redis.call('HINCRBY', KEYS[1], 't' .. slot, forced)
  retries = retries + forced
end
local spent = 0
if ARGV[2] == '1' and retries + 1 <= tonumber(ARGV[3]) * requests + tonumber(ARGV[4]) + 1e-9 then
  redis.call('HINCRBY', KEYS[1], 't' .. slot, 1)
  spent = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(width * slices * 1000) + 1000)
return {spent, requests}
"""
)

# A breaker's consecutive-failure count, in one step (no compare-and-set round trips when many
# processes fail at once). KEYS[1] the record (the codec's JSON list); ARGV: the trips the call
# was admitted under, the threshold, the clock value to open at, '1' failed / '0' succeeded,
# the idle expiry in ms, the window's bucket count. As the breaker's own count: an outcome of a
# call admitted before the circuit last opened, or while it is not closed, changes nothing; a
# failure adds one and opens the circuit at the threshold; a success clears the count.
# {1, old, new}: written; {0, old, old}: nothing to change; {-1, '', ''}: a value this script
# cannot read (the store then uses compare-and-set). '' is no value.
COUNT = """
local raw = redis.call('GET', KEYS[1])
local rec
if raw then
  local ok, data = pcall(cjson.decode, raw)
  if not ok or type(data) ~= 'table' or data[1] ~= 'breaker' or #data ~= 14 then
    return {-1, '', ''}
  end
  rec = data
else
  raw = ''
  local zeros = {}
  for i = 1, tonumber(ARGV[6]) do zeros[i] = 0 end
  rec = {'breaker', 'closed', 0, 0, 0, 0, 0, 0, 0, 0, zeros, zeros, 0, 0}
end
if rec[2] ~= 'closed' or rec[5] ~= tonumber(ARGV[1]) then
  return {0, raw, raw}
end
if ARGV[4] == '1' then
  rec[3] = rec[3] + 1
  if rec[3] >= tonumber(ARGV[2]) then
    local zeros = {}
    for i = 1, tonumber(ARGV[6]) do zeros[i] = 0 end
    rec = {'breaker', 'open', 0, tonumber(ARGV[3]), rec[5] + 1, 0, 0, 0, 0, 0, zeros, zeros, 0, 0}
  end
elseif rec[3] == 0 then
  return {0, raw, raw}
else
  rec[3] = 0
end
local new = cjson.encode(rec)
redis.call('SET', KEYS[1], new, 'PX', ARGV[5])
return {1, raw, new}
"""
