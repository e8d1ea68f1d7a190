-- wrk script for bench/ingest_http.py: one new event per request, each with
-- its own uuid, so every POST is a real insert (never a duplicate).
-- Globals, not locals: setup() runs in the main Lua state and thread:set
-- writes a global of each thread's own state.
counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id)
  token = args[1]
  base = args[2]  -- a timestamp prefix such as 2026-11-30T12:00:
end

local function uuid4()
  local t = {}
  for i = 1, 16 do t[i] = math.random(0, 255) end
  t[7] = (t[7] % 16) + 64   -- version 4
  t[9] = (t[9] % 64) + 128  -- variant 10
  return string.format(
    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
    t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8],
    t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[16])
end

function request()
  counter = counter + 1
  local user = "user" .. ((thread_id * 7919 + counter) % 2000)
  local body = string.format(
    '{"event_uuid":"%s","timestamp":"%s%02d.%06dZ","event_type":"user_login",' ..
    '"caller":"%s","subject":"%s","subject_type":"user","success":%s}',
    uuid4(), base, counter % 60, counter % 1000000, user, user,
    tostring(counter % 13 ~= 0))
  return wrk.format("POST", "/api/v1/events", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

-- No response() callback: with one, wrk hands every response's headers and
-- body to Lua, client CPU taken from the server it measures on a 2-core
-- machine. A status of 400 or more is counted in summary.errors.status
-- anyway, and the bench counts the rows really stored.
function done(summary, latency, requests)
  io.write(string.format("WRK requests=%d seconds=%.3f p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
