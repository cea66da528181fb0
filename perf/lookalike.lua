-- wrk script: POST look-alike requests to the URL's path (`python -m perf.wrk --endpoint lookalike`), count
-- non-200, degraded and model-scored answers; the COUNTS line is count.lua's (ranked = scored_by "model").
-- Arguments after `--`: users (seeds are 5 random users below it), k, the share of requests with `near`,
-- and the points `near` is drawn from ("lat,lon;lat,lon;..."), each with a 10 km radius.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function init(args)
  non200 = 0; degraded = 0; ranked = 0; ok = 0; shed = 0
  users = tonumber(args[1] or "5000"); k = tonumber(args[2] or "100"); near_share = tonumber(args[3] or "0")
  points = {}
  for lat, lon in string.gmatch(args[4] or "", "([-%d.]+),([-%d.]+)") do table.insert(points, {lat, lon}) end
  math.randomseed(os.time() * 100 + (id or 0))
end
function request()
  local seeds = {}
  for i = 1, 5 do seeds[i] = tostring(math.random(0, users - 1)) end
  local near = ""
  if #points > 0 and math.random() < near_share then
    local p = points[math.random(1, #points)]
    near = string.format(', "near": {"lat": %s, "lon": %s, "radius_km": 10}', p[1], p[2])
  end
  return wrk.format(nil, nil, nil, string.format('{"seed_user_ids": [%s], "k": %d%s}', table.concat(seeds, ","), k, near))
end
function response(status, headers, body)
  if status == 503 then shed = shed + 1
  elseif status ~= 200 then non200 = non200 + 1
  else
    ok = ok + 1
    if not body:find('"degraded":[]', 1, true) then degraded = degraded + 1 end
    if body:find('"scored_by":"model"', 1, true) then ranked = ranked + 1 end
  end
end
function done(summary, latency, requests)
  local t = {ok = 0, non200 = 0, degraded = 0, ranked = 0, shed = 0}
  for _, th in ipairs(threads) do
    for key, _ in pairs(t) do t[key] = t[key] + (th:get(key) or 0) end
  end
  io.write(string.format("COUNTS ok=%d shed=%d non200=%d degraded=%d ranked=%d rps=%.1f p99_ms=%.2f\n",
    t.ok, t.shed, t.non200, t.degraded, t.ranked, summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000))
end
