import { appendAttemptLua } from './attempt-store.js';

// The Lua scripts of ConnectionControl (src/store/connection-control.ts), each one decision made
// atomically for every worker process.

// KEYS: control hash, probe lease, dedupe claim, connections hash. ARGV: now, delivery id, emission
// interval ms (0: no rate), burst tolerance ms, longest wait a worker may hold a job for, dedupe
// window ms (0: off), probe lease ms, circuit on, connection id, the connection version the caller
// holds ('': do not check), whether the CRM's throttle applies ('1': a request to the CRM).
// Answers {'go', waitMs, probe, transition, reopening} | {'wait', waitMs, reason, transition} |
// {'merged', holder} | {'stale', current record or nothing}.
// A CRM that answered 429 (`throttle`) is reopened gently: until its wait is over nothing goes;
// then one request (`reopening`, its lease in reopenBy/reopenUntil) asks it again, and the others
// wait for its answer. Only a settle of that request that was not rate-limited again clears it.
// The version check rides along so a worker needs no separate read of its connection per delivery:
// the stored record starts with its version (ConnectionStore's PUT_SCRIPT splices it in first).
export const ADMIT_SCRIPT = `
if ARGV[10] ~= '' then
  local record = redis.call('HGET', KEYS[4], ARGV[9])
  if not record then return {'stale'} end
  if string.match(record, '^{"version":(%d+),') ~= ARGV[10] then return {'stale', record} end
end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local holdMax = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
if window > 0 then
  local holder = redis.call('GET', KEYS[3])
  if holder and holder ~= id then return {'merged', holder} end
end
local reopening = 0
if ARGV[11] == '1' then
  local throttled = tonumber(redis.call('HGET', KEYS[1], 'throttledUntil') or '0')
  if throttled > 0 then
    if now < throttled then return {'wait', tostring(throttled - now), 'crm_rate_limited', ''} end
    local holder = redis.call('HGET', KEYS[1], 'reopenBy')
    local leaseUntil = tonumber(redis.call('HGET', KEYS[1], 'reopenUntil') or '0')
    if holder and holder ~= id and now < leaseUntil then
      local left = leaseUntil - now
      if left > 500 then left = 500 end
      return {'wait', tostring(left), 'crm_rate_limited', ''}
    end
    redis.call('HSET', KEYS[1], 'reopenBy', id, 'reopenUntil', tostring(now + lease))
    reopening = 1
  end
end
local function notNow(waitMs, reason, transition)
  if reopening == 1 then redis.call('HDEL', KEYS[1], 'reopenBy', 'reopenUntil') end
  return {'wait', waitMs, reason, transition}
end
local transition = ''
local probe = 0
if ARGV[8] == '1' then
  local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
  if state == 'open' then
    local reopen = tonumber(redis.call('HGET', KEYS[1], 'openUntil') or '0')
    if now < reopen then return notNow(tostring(reopen - now), 'circuit_open', '') end
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'changedAt', tostring(now))
    state = 'half_open'
    transition = 'half_open'
  end
  if state == 'half_open' then
    if not redis.call('SET', KEYS[2], id, 'NX', 'PX', lease) then
      if redis.call('GET', KEYS[2]) ~= id then
        local left = redis.call('PTTL', KEYS[2])
        if left < 0 or left > 1000 then left = 1000 end
        return notNow(tostring(left), 'circuit_probe', transition)
      end
    end
    probe = 1
  end
end
local wait = 0
if interval > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
  if tat < now then tat = now end
  wait = tat - tolerance - now
  if wait < 0 then wait = 0 end
  if wait > holdMax then
    if probe == 1 then redis.call('DEL', KEYS[2]) end
    return notNow(tostring(wait), 'rate_limit', transition)
  end
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', tat + interval))
end
if window > 0 then redis.call('SET', KEYS[3], id, 'PX', window) end
return {'go', tostring(wait), tostring(probe), transition, tostring(reopening)}
`;

// KEYS: control hash, probe lease, dedupe claim, attempt list, attempt counter. ARGV: now, delivery
// id, outcome (up | down | neutral), release the dedupe claim, circuit on, failures, warnAfter,
// failure ratio (0: off), minRequests, window ms, cooldown ms, attempt record ('': none), attempt
// records kept, attempt TTL ms, '1' when this delivery reopened a throttled CRM and was not
// rate-limited again (the connection's configured rate resumes).
// Answers {state, consecutive failures, event...}. Outcomes are counted in 10 ring slots over the
// window, so the ratio costs 10 fields, not one entry per request. The delivery's attempt record
// rides along: one round trip per delivery outcome.
export const SETTLE_SCRIPT = `
if ARGV[12] ~= '' then
${appendAttemptLua({ list: 'KEYS[4]', counter: 'KEYS[5]', record: 'ARGV[12]', keep: 'ARGV[13]', ttlMs: 'ARGV[14]' })}
end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local outcome = ARGV[3]
if ARGV[4] == '1' and redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
if redis.call('GET', KEYS[2]) == id then redis.call('DEL', KEYS[2]) end
if ARGV[15] == '1' and redis.call('HGET', KEYS[1], 'reopenBy') == id then
  redis.call('HDEL', KEYS[1], 'throttledUntil', 'reopenBy', 'reopenUntil')
end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local consecutive = tonumber(redis.call('HGET', KEYS[1], 'consecutive') or '0')
if ARGV[5] ~= '1' or outcome == 'neutral' then return {state, consecutive} end
local events = {}
local slotMs = tonumber(ARGV[10]) / 10
local n = math.floor(now / slotMs)
local slot = n % 10
if tonumber(redis.call('HGET', KEYS[1], 'n' .. slot) or '-1') ~= n then
  redis.call('HSET', KEYS[1], 'n' .. slot, n, 'u' .. slot, 0, 'd' .. slot, 0)
end
if outcome == 'up' then
  redis.call('HINCRBY', KEYS[1], 'u' .. slot, 1)
  consecutive = 0
  redis.call('HSET', KEYS[1], 'consecutive', 0)
  if state ~= 'closed' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'changedAt', tostring(now))
    state = 'closed'
    table.insert(events, 'circuit_closed')
  end
  if redis.call('HGET', KEYS[1], 'failing') == '1' then
    redis.call('HSET', KEYS[1], 'failing', 0)
    table.insert(events, 'connection_recovered')
  end
else
  redis.call('HINCRBY', KEYS[1], 'd' .. slot, 1)
  consecutive = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
  if consecutive >= tonumber(ARGV[7]) and redis.call('HGET', KEYS[1], 'failing') ~= '1' then
    redis.call('HSET', KEYS[1], 'failing', 1)
    table.insert(events, 'connection_failing')
  end
  local open = state == 'half_open'
  if state == 'closed' then
    if consecutive >= tonumber(ARGV[6]) then open = true
    elseif tonumber(ARGV[8]) > 0 then
      local up, down = 0, 0
      for i = 0, 9 do
        if tonumber(redis.call('HGET', KEYS[1], 'n' .. i) or '-1') > n - 10 then
          up = up + tonumber(redis.call('HGET', KEYS[1], 'u' .. i) or '0')
          down = down + tonumber(redis.call('HGET', KEYS[1], 'd' .. i) or '0')
        end
      end
      if up + down >= tonumber(ARGV[9]) and down / (up + down) >= tonumber(ARGV[8]) then open = true end
    end
  end
  if open then
    redis.call('HSET', KEYS[1], 'state', 'open', 'openUntil', tostring(now + tonumber(ARGV[11])),
      'changedAt', tostring(now))
    state = 'open'
    table.insert(events, 'circuit_opened')
  end
end
local answer = {state, consecutive}
for _, event in ipairs(events) do table.insert(answer, event) end
return answer
`;

// KEYS: control hash. ARGV: until (epoch ms). The CRM said 429: nothing goes before `until` (a
// later answer never shortens an earlier wait), then one request reopens it (see ADMIT_SCRIPT).
export const THROTTLE_SCRIPT = `
local waitEnds = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'throttledUntil') or '0')
if waitEnds > current then
  redis.call('HSET', KEYS[1], 'throttledUntil', tostring(waitEnds))
  redis.call('HDEL', KEYS[1], 'reopenBy', 'reopenUntil')
end
return 1
`;
