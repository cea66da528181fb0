-- wrk script: POST look-alike requests to the URL's path (`python -m perf.wrk --endpoint lookalike`).
-- The counting (non-200, shed, degraded, model-scored answers) and the COUNTS line are count.lua's,
-- loaded from this script's folder; this script draws the requests.
-- Arguments after `--`: users (seeds are 5 random users below it), k, the share of requests with `near`,
-- and the points `near` is drawn from ("lat,lon;lat,lon;..."), each with a 10 km radius.
dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "") .. "count.lua")

local count_setup, count_init, count_response = setup, init, response
local started = 0
function setup(thread)
  count_setup(thread)
  started = started + 1
  thread:set("id", started)
end
function init(args)
  count_init(args)
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
-- count.lua counts an answer scored by rank; a look-alike answer scored by the model says "model" there
function response(status, headers, body)
  local compact = body:gsub("%s", "")
  count_response(status, headers, (compact:gsub('"scored_by":"model"', '"scored_by":"rank"', 1)))
end
