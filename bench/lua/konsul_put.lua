package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
require("common")
local body = '{"value":"' .. VALUE .. '"}'
local headers = { ["Content-Type"] = "application/json" }
request = function()
  return wrk.format("PUT", "/kv/" .. key(next_index()), headers, body)
end
