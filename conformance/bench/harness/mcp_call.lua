-- wrk script: MCP `tools/call TOOL {"sql": "SELECT 1"}` over keep-alive
-- HTTP/1.1, with a unique JSON-RPC id on every request.
--
--   wrk -t C -c C -s mcp_call.lua URL -- TOOL BEARER SESSIONS_FILE
--
-- Run with one thread per connection (-t = -c), so each thread holds one
-- connection and one MCP session: SESSIONS_FILE has one `Mcp-Session-Id` per
-- line, made by mcp_driver.py's `sessions` command (initialize +
-- notifications/initialized); an empty line means the target is stateless.
-- Every response is checked (status 200, a JSON-RPC result that is not a
-- tool error); done() prints one JSON line for mcp_driver.py to parse.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("index", counter)
   table.insert(threads, thread)
end

local tool, bearer, sessions_file
local next_id = 0
-- Globals, so that done() can read them with thread:get.
ok_count, bad_count, first_bad = 0, 0, nil
local prefix

function init(args)
   tool, bearer, sessions_file = args[1], args[2], args[3]
   local sessions = {}
   for line in io.lines(sessions_file) do table.insert(sessions, line) end
   local sid = sessions[((index - 1) % #sessions) + 1]
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json, text/event-stream"
   if bearer ~= "" then wrk.headers["Authorization"] = "Bearer " .. bearer end
   if sid ~= nil and sid ~= "" then
      wrk.headers["Mcp-Session-Id"] = sid
      wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
   end
   -- Ids unique across threads: the thread's index is the high part.
   next_id = index * 1000000000
   prefix = '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"' .. tool ..
      '","arguments":{"sql":"SELECT 1"}},"id":'
end

function request()
   next_id = next_id + 1
   return wrk.format(nil, nil, nil, prefix .. next_id .. '}')
end

function response(status, headers, body)
   if status == 200 and body:find('"result"', 1, true)
      and not body:find('"isError":true', 1, true)
      and not body:find('"error":{', 1, true) then
      ok_count = ok_count + 1
   else
      bad_count = bad_count + 1
      if first_bad == nil then first_bad = status .. " " .. body:sub(1, 300) end
   end
end

function done(summary, latency, requests)
   local ok, bad, sample = 0, 0, ""
   for _, t in ipairs(threads) do
      ok = ok + (t:get("ok_count") or 0)
      bad = bad + (t:get("bad_count") or 0)
      local fb = t:get("first_bad")
      if fb ~= nil and sample == "" then sample = fb end
   end
   local e = summary.errors
   sample = sample:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('[%c]', ' ')
   io.write(string.format(
      '{"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,"socket_errors":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"bad_sample":"%s"}\n',
      summary.requests, summary.duration, ok, bad,
      e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, sample))
end
